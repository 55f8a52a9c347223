"""invoke deploy, rollback and deploy.status on a real machine (dp1): docker, the app, nginx.

The test app is built here (app_images.py) in three versions: v1, v2 and a broken v3 whose
health check fails. Two instances (8000, 8001) sit behind nginx's upstream. A client on this
machine sends requests through nginx at a steady rate the whole time v2 rolls out: none may
fail, and once the deploy is done every answer is v2. The broken v3 never takes traffic and
leaves v2 serving; a rollback returns to v1 the same way; a held lock, a version that does not
exist and a deploy killed midway are each met as a user would meet them. The tests run in
order; each leaves the host as the next expects.
"""

from __future__ import annotations

import http.client
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from provisioner import sandbox
from provisioner.commands import quote
from provisioner.content.roles import PROJECT_ROOT
from tests.integration.app_images import IMAGE, build_image_archive
from tests.integration.conftest import (
    Invocation,
    edit_inventory,
    invoke_task,
    own_machines,
    root_output,
)

pytestmark = pytest.mark.integration

SITE = "app.example.test"
REGISTRY_CONFIG = """version: 0.1
storage:
  filesystem: {rootdirectory: /var/lib/docker-registry}
http:
  addr: 127.0.0.1:5000
"""
STATE = "/var/lib/provisioner/apps/testapp"


def app_vars(archives: Path) -> dict[str, Any]:
    return {
        "app_name": "testapp", "app_image": IMAGE, "app_source": "archive",
        "app_archive_dir": str(archives), "app_instances": [8000, 8001],
        "app_container_port": 8080, "app_user": "10001:10001",
        "app_environment": {"GREETING": "hello"}, "app_health_timeout": 8,
        "app_drain_timeout": 5, "app_keep_releases": 2,
        "nginx_upstreams": [{"name": "api", "app": "testapp"}],
        "nginx_sites": [{"name": "app", "server_names": [SITE], "certificate": "self-signed",
                         "locations": [{"path": "/", "upstream": "api"}]}],
    }


@dataclass
class Deployment:
    machine: sandbox.Machine
    inventory: Path

    def invoke(self, *arguments: str, timeout: int = 600) -> Invocation:
        started = time.monotonic()
        run = invoke_task(*arguments, "--host", "dp1", inventory=self.inventory,
                          report=self.inventory.parent / "report.json", timeout=timeout)
        print(f"invoke {' '.join(arguments)}: exit {run.exit_code} in "
              f"{time.monotonic() - started:.1f} s\n{run.output}")
        return run

    def root(self, command: str) -> str:
        return root_output(self.machine, command)

    def live(self) -> dict[str, str]:
        """instance -> "port version", as the host records it."""
        output = self.root(f"for f in {STATE}/live/*; do [ -e \"$f\" ] && "
                           "echo \"${f##*/} $(cat \"$f\")\"; done; true")
        return {line.split()[0]: " ".join(line.split()[1:]) for line in output.splitlines()}

    def versions(self) -> set[str]:
        return {value.split()[1] for value in self.live().values()}


class SiteConnection(http.client.HTTPSConnection):
    """HTTPS to the site's name at the machine's address (nginx refuses a handshake without
    the site's SNI); the certificate is self-signed, so it is not checked here."""

    def __init__(self, address: str) -> None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        super().__init__(SITE, 443, timeout=5, context=context)
        self.address, self.tls = address, context

    def connect(self) -> None:
        raw = socket.create_connection((self.address, 443), timeout=5)
        self.sock = self.tls.wrap_socket(raw, server_hostname=SITE)


@dataclass
class SteadyClient:
    """GET / through nginx (TLS, a new connection each time) at a steady rate."""

    address: str
    rate: float = 100.0
    answers: list[tuple[float, str]] = field(default_factory=list)
    failures: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def get(self, path: str = "/") -> str:
        connection = SiteConnection(self.address)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read().decode().strip()
            if response.status != 200:
                raise OSError(f"status {response.status}: {body[:80]}")
            return body
        finally:
            connection.close()

    def _run(self) -> None:
        interval, next_at = 1 / self.rate, time.monotonic()
        while not self._stop.is_set():
            try:
                self.answers.append((time.monotonic(), self.get()))
            except (OSError, http.client.HTTPException) as error:
                self.failures.append((time.monotonic(), repr(error)))
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop_after(self, requests: int) -> None:
        while len(self.answers) + len(self.failures) < requests:
            time.sleep(0.1)
        self._stop.set()
        assert self._thread is not None
        self._thread.join()


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    archives = tmp_path_factory.mktemp("releases")
    for version in ("v1", "v2"):
        build_image_archive(archives, version)
    build_image_archive(archives, "v3", healthy=False)
    with own_machines(tmp_path_factory, "dp", count=1) as ((machine,), inventory):
        def edit(data: dict[str, Any]) -> None:
            (plain,) = data["hosts"].values()
            data["groups"] = {}
            data["hosts"] = {"dp1": {**plain, "groups": [], "roles": ["docker", "app", "nginx"],
                                     "vars": app_vars(archives)}}

        edit_inventory(inventory, edit)
        yield Deployment(machine, inventory)


def test_provision_installs_the_app_without_starting_a_version(app: Deployment) -> None:
    first = app.invoke("provision")
    assert first.exit_code == 0, first.output

    again = app.invoke("provision")

    assert again.exit_code == 0
    assert again.report["hosts"]["dp1"]["changed"] == 0, again.output
    assert app.live() == {}
    assert app.root("docker ps -q | wc -l").strip() == "0"
    assert app.root("cat /etc/nginx/apps/testapp.servers").count("server 127.0.0.1:800") == 2


def test_deploy_v1_serves_it_on_both_instances(app: Deployment) -> None:
    run = app.invoke("deploy", "--version", "v1")

    assert run.exit_code == 0, run.output
    assert app.versions() == {"v1"}
    assert SteadyClient(app.machine.address).get() == "v1"
    status = app.invoke("deploy.status")
    assert status.exit_code == 0 and status.output.count("v1 on port") == 2, status.output


def test_deploy_v2_under_steady_load_fails_no_request(app: Deployment) -> None:
    client = SteadyClient(app.machine.address)
    client.start()
    time.sleep(2)

    run = app.invoke("deploy", "--version", "v2", "--message", "steady load")
    deployed_at = time.monotonic()
    client.stop_after(2000)

    assert run.exit_code == 0, run.output
    assert client.failures == [], client.failures[:5]
    after = [body for at, body in client.answers if at > deployed_at]
    assert after and set(after) == {"v2"}, set(after)
    assert {"v1", "v2"} <= {body for _, body in client.answers}
    assert app.versions() == {"v2"}


def test_a_broken_v3_never_takes_traffic_and_v2_keeps_serving(app: Deployment) -> None:
    client = SteadyClient(app.machine.address, rate=50)
    client.start()

    run = app.invoke("deploy", "--version", "v3")
    client.stop_after(200)

    assert run.exit_code == 1, run.output
    assert "instance 8000" in run.output and "health check GET /health" in run.output
    assert "refusing to become healthy" in run.output, run.output  # the failing logs
    assert client.failures == [] and {body for _, body in client.answers} == {"v2"}
    assert app.versions() == {"v2"}
    assert app.root(f"test -e {STATE}/deploy.lock && echo held || echo free").strip() == "free"
    assert '"result": "rolled back"' in app.root(f"tail -n 1 {STATE}/history")


def test_rollback_returns_to_v1_by_the_same_path(app: Deployment) -> None:
    client = SteadyClient(app.machine.address, rate=50)
    client.start()

    run = app.invoke("rollback")
    client.stop_after(200)

    assert run.exit_code == 0, run.output
    assert "from v2 to v1" in run.output
    assert client.failures == []
    assert app.versions() == {"v1"}
    history = app.invoke("deploy.history")
    assert "rollback v1" in " ".join(history.output.split())


def test_the_containers_live_through_a_docker_restart(app: Deployment) -> None:
    """live-restore keeps detached containers running while dockerd restarts (a package
    upgrade, a daemon.json change), and the oneshot units leave them be: before, every
    instance restarted at once (a breaker counted 156 failed requests). What remains is
    Docker re-creating its NAT rules as it starts: requests fail for that moment (printed
    here; nginx's max_fails can stretch it to fail_timeout), and serve again after it."""
    started = app.root("docker inspect --format '{{.Name}} {{.State.StartedAt}}' "
                       "$(docker ps -q)")
    client = SteadyClient(app.machine.address, rate=50)
    client.start()
    time.sleep(1)

    app.root("systemctl restart docker")
    client.stop_after(len(client.answers) + len(client.failures) + 100)

    print(f"failed requests during the docker restart: {len(client.failures)}")
    assert app.root("docker inspect --format '{{.Name}} {{.State.StartedAt}}' "
                    "$(docker ps -q)") == started
    serving = app.versions()
    assert client.answers[-50:] and {body for _, body in client.answers[-50:]} == serving
    assert app.invoke("deploy.status").exit_code == 0


def test_a_held_lock_refuses_a_second_deploy_with_its_details(app: Deployment) -> None:
    app.root(f"printf 'token=abc\\naction=deploy\\nversion=v2\\nwho=alice@laptop\\n"
             f"since=2026-12-04T10:00:00Z\\ncontroller=laptop\\npid=4242\\nmessage=hotfix\\n' "
             f"> {STATE}/deploy.lock")
    before = app.live()

    refused = app.invoke("deploy", "--version", "v2")

    assert refused.exit_code == 1
    assert "alice@laptop" in refused.output and "hotfix" in refused.output, refused.output
    assert "--force-unlock" in refused.output
    assert app.live() == before
    provision = app.invoke("provision")  # it would move the instances under the deploy
    assert provision.exit_code == 1 and "holds its lock" in provision.output, provision.output
    unlocked = app.invoke("deploy", "--force-unlock")
    assert unlocked.exit_code == 0 and "alice@laptop" in unlocked.output
    assert app.root(f"test -e {STATE}/deploy.lock && echo held || echo free").strip() == "free"


def test_a_version_that_does_not_exist_changes_nothing(app: Deployment) -> None:
    before = (app.live(), app.root(f"cat {STATE}/history | wc -l"))

    run = app.invoke("deploy", "--version", "v9")

    assert run.exit_code == 1
    assert "v9" in run.output and "does not exist" in run.output, run.output
    assert "Nothing was changed" in run.output
    assert (app.live(), app.root(f"cat {STATE}/history | wc -l")) == before
    bad = app.invoke("deploy", "--version", "../v1")
    assert bad.exit_code == 2 and "cannot be a version" in bad.output


def test_a_deploy_killed_midway_is_repaired_by_the_next_one(app: Deployment) -> None:
    command = [sys.executable, "-m", "invoke", "deploy", "--version", "v2", "--host", "dp1",
               "--inventory", str(app.inventory)]
    deploy = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    assert deploy.stdout is not None
    for line in deploy.stdout:  # killed once the first instance serves v2
        print(line, end="")
        if "instance 8000: serves v2" in line:
            deploy.send_signal(signal.SIGKILL)
            break
    deploy.wait(timeout=60)
    time.sleep(3)  # any move under way finishes on the host by itself

    assert SteadyClient(app.machine.address).get() in ("v1", "v2")
    assert app.root(f"test -e {STATE}/deploy.lock && echo held || echo free").strip() == "held"
    again = app.invoke("deploy", "--version", "v2")
    assert again.exit_code == 0, again.output
    assert "taking over the lock" in again.output
    assert app.versions() == {"v2"}


def test_a_changed_environment_rolls_through_the_instances(app: Deployment) -> None:
    edit_inventory(app.inventory, lambda data: data["hosts"]["dp1"]["vars"]["app_environment"]
                   .update(GREETING="changed"))
    before = app.live()
    client = SteadyClient(app.machine.address, rate=50)
    client.start()

    run = app.invoke("provision")
    client.stop_after(200)

    assert run.exit_code == 0, run.output
    assert client.failures == []
    after = app.live()  # each instance moved to a new container on its other port
    assert all(after[name].split()[0] != before[name].split()[0] for name in before), after
    assert app.versions() == {"v2"}
    for value in app.live().values():
        port = value.split()[0]
        assert "GREETING=changed" in app.root(
            f"docker inspect --format '{{{{.Config.Env}}}}' testapp-{port}")


def test_a_secret_reaches_the_container_as_a_file_only_it_reads(app: Deployment) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["hosts"]["dp1"]["vars"].update(
            host_secrets={"testapp_db_password": {}},
            app_secrets={"DB_PASSWORD": {"secret": "host:testapp_db_password"}})

    edit_inventory(app.inventory, edit)

    run = app.invoke("provision")

    assert run.exit_code == 0, run.output
    assert SteadyClient(app.machine.address).get("/cgi-bin/secret-seen") == "yes"
    secret = "/etc/testapp/secrets/db_password"
    assert app.root(f"stat -c '%U %a' {secret}").strip() == "testapp 400"
    value = app.root(f"cat {secret}").strip()
    assert len(value) >= 20
    port = next(iter(app.live().values())).split()[0]
    seen = app.root(f"docker inspect testapp-{port}; cat /etc/testapp/container.env "
                    "/etc/systemd/system/testapp@.service")
    assert "DB_PASSWORD_FILE=/run/secrets/db_password" in seen and value not in seen


def test_the_migration_runs_once_with_the_new_version_before_any_instance_moves(
        app: Deployment) -> None:
    def edit(data: dict[str, Any]) -> None:
        data["hosts"]["dp1"]["vars"].update(
            app_volumes=["/srv/testapp-data:/data"],
            app_migration_command="/bin/busybox sh -c 'cat /www/index.html >> /data/migrated'")

    edit_inventory(app.inventory, edit)
    assert app.invoke("provision").exit_code == 0

    run = app.invoke("deploy", "--version", "v1")

    assert run.exit_code == 0, run.output
    assert app.root("cat /srv/testapp-data/migrated").split() == ["v1"]
    assert run.output.index("running the migration") < run.output.index("instance 8000:")
    assert app.versions() == {"v1"}


def test_versions_from_a_registry(app: Deployment, tmp_path: Path) -> None:
    """Debian's docker-registry on the machine itself (127.0.0.1:5000: Docker allows a plain
    HTTP registry on loopback; Debian's configuration asks for htpasswd logins, this one for
    none), holding v1 and v2 pushed from the archives."""
    registry = "127.0.0.1:5000/testapp"
    app.root("DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-registry >/dev/null "
             f"&& printf %s {quote(REGISTRY_CONFIG)} > /etc/docker/registry/config.yml "
             "&& systemctl restart docker-registry && for i in $(seq 50); do "
             "curl -sf http://127.0.0.1:5000/v2/ >/dev/null && exit 0; sleep 0.2; done; exit 1")
    for version in ("v1", "v2"):
        app.root(f"docker tag {IMAGE}:{version} {registry}:{version} && "
                 f"docker push --quiet {registry}:{version} >/dev/null && "
                 f"docker image rm {registry}:{version} >/dev/null")

    def edit(data: dict[str, Any]) -> None:
        data["hosts"]["dp1"]["vars"].update(app_source="registry", app_image=registry)

    edit_inventory(app.inventory, edit)
    switched = app.invoke("provision")  # the instances move to the registry's image of v1
    assert switched.exit_code == 0, switched.output

    missing = app.invoke("deploy", "--version", "v404")
    deployed = app.invoke("deploy", "--version", "v2")

    assert missing.exit_code == 1 and "v404 cannot be pulled" in missing.output, missing.output
    assert deployed.exit_code == 0, deployed.output
    assert app.versions() == {"v2"}
    assert SteadyClient(app.machine.address).get() == "v2"
    assert app.root(f"docker image inspect --format ok {registry}:v2").strip() == "ok"


def test_an_instance_taken_out_leaves_nginx_before_it_stops(app: Deployment) -> None:
    edit_inventory(app.inventory,
                   lambda data: data["hosts"]["dp1"]["vars"].update(app_instances=[8000]))
    client = SteadyClient(app.machine.address, rate=50)
    client.start()

    run = app.invoke("provision")
    client.stop_after(200)

    assert run.exit_code == 0, run.output
    assert "retired testapp@" in run.output, run.output
    assert client.failures == []
    assert list(app.live()) == ["8000"]
    running = app.root("systemctl list-units --plain --no-legend --state=active "
                       "'testapp@*.service' | awk '{print $1}'").split()
    assert running == [f"testapp@{app.live()['8000'].split()[0]}.service"]
    assert app.root("cat /etc/nginx/apps/testapp.servers").count("server ") == 1


def test_an_instance_added_starts_with_the_serving_version(app: Deployment) -> None:
    edit_inventory(app.inventory,
                   lambda data: data["hosts"]["dp1"]["vars"].update(app_instances=[8000, 8002]))
    serving = app.live()["8000"]
    started = app.root(f"docker inspect --format '{{{{.State.StartedAt}}}}' "
                       f"testapp-{serving.split()[0]}")
    client = SteadyClient(app.machine.address, rate=50)
    client.start()

    run = app.invoke("provision")
    client.stop_after(150)

    assert run.exit_code == 0, run.output
    assert client.failures == []
    assert sorted(app.live()) == ["8000", "8002"] and app.versions() == {"v2"}
    assert app.live()["8000"] == serving  # the other instance is left alone
    assert app.root(f"docker inspect --format '{{{{.State.StartedAt}}}}' "
                    f"testapp-{serving.split()[0]}") == started
    assert app.invoke("deploy.status").exit_code == 0


def test_a_new_port_offset_moves_the_instances_without_a_failed_request(
        app: Deployment) -> None:
    edit_inventory(app.inventory, lambda data: data["hosts"]["dp1"]["vars"].update(
        app_alternate_port_offset=20000))
    client = SteadyClient(app.machine.address, rate=50)
    client.start()

    run = app.invoke("provision")
    client.stop_after(150)

    assert run.exit_code == 0, run.output
    assert client.failures == []
    ports = {value.split()[0] for value in app.live().values()}
    assert ports <= {"8000", "8002", "28000", "28002"}, app.live()
    running = app.root("systemctl list-units --plain --no-legend --state=active "
                       "'testapp@*.service' | awk '{print $1}'").split()
    assert sorted(running) == sorted(f"testapp@{port}.service" for port in ports)


def test_provision_after_deploys_changes_nothing_and_verify_passes(app: Deployment) -> None:
    again = app.invoke("provision")
    assert again.exit_code == 0
    assert again.report["hosts"]["dp1"]["changed"] == 0, again.output
    assert again.report["hosts"]["dp1"]["round_trips"] == 1

    verify = app.invoke("verify")

    assert verify.exit_code == 0, verify.output
