"""Config sets on a real host: Debian's nginx with an include and two conf.d sites managed as one
set, checked by ``nginx -t`` in a private mount namespace before anything goes live.

Its own machine (cs1), with only the configset test role (tests/integration/roles/configset):
the tests run in order, each starting from the state the one before left.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner import sandbox
from tests.integration.conftest import (
    TEST_ROLES,
    Invocation,
    admin_ssh,
    edit_inventory,
    invoke_task,
    own_machines,
)

pytestmark = pytest.mark.integration

MANAGED = "/etc/nginx/configset-common.conf /etc/nginx/conf.d/*"


@dataclass(frozen=True)
class Served:
    machine: sandbox.Machine
    inventory: Path

    def provision(self, *settings: str) -> Invocation:
        arguments = [item for setting in settings for item in ("--set", setting)]
        started = time.monotonic()
        run = invoke_task("provision", *arguments, inventory=self.inventory,
                          report=self.inventory.parent / "report.json",
                          environment={"PROVISIONER_ROLES_PATH": str(TEST_ROLES)})
        print(f"provision {' '.join(settings) or '(defaults)'}: "
              f"{time.monotonic() - started:.1f} s, exit {run.exit_code}")
        return run

    def ssh(self, command: str) -> subprocess.CompletedProcess[str]:
        return admin_ssh(self.machine, command)

    def checksums(self) -> str:
        """Every managed file's checksum, and every name in conf.d and next to /etc/nginx."""
        listing = self.ssh(f"sudo sha256sum {MANAGED}; ls -a /etc/nginx/conf.d; ls -a /etc")
        assert listing.returncode == 0, listing.stderr
        return listing.stdout

    def get(self, port: int) -> tuple[str, str]:
        """The body and X-Config-Set header nginx answers with on port."""
        url = f"http://{self.machine.address}:{port}/"
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.read().decode(), response.headers.get("X-Config-Set", "")

    def serves(self, port: int, body: str) -> tuple[str, str]:
        """What port answers once it answers ``body`` (a reload takes effect within moments)."""
        deadline, answer = time.monotonic() + 10, ("", "")
        while time.monotonic() < deadline:
            try:
                answer = self.get(port)
            except (urllib.error.URLError, ConnectionError):
                answer = ("", "")
            if answer[0] == body:
                break
            time.sleep(0.2)
        return answer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with own_machines(tmp_path_factory, "cs") as ((machine,), inventory):
        edit_inventory(inventory, lambda data: data["hosts"][machine.name].update(
            roles=["configset"], groups=[]))
        yield Served(machine, inventory)


def test_a_valid_set_goes_live_together_and_nginx_serves_it(served: Served) -> None:
    run = served.provision()

    assert run.exit_code == 0, run.output
    steps = {step["label"]: step for step in run.report["hosts"]["cs1"]["steps"]}
    assert steps["config set /etc/nginx"]["status"] == "changed"
    assert steps["config set /etc/nginx"]["reason"] == (
        "/etc/nginx/conf.d/site-a.conf created; /etc/nginx/conf.d/site-b.conf created; "
        "/etc/nginx/configset-common.conf created")
    assert steps["handler nginx:reload"]["status"] == "changed"
    assert served.serves(8081, "site-a generation 1\n") == ("site-a generation 1\n",
                                                             "generation 1")
    assert served.serves(8082, "site-b generation 1\n") == ("site-b generation 1\n",
                                                             "generation 1")


def test_a_second_run_reports_nothing_changed(served: Served) -> None:
    run = served.provision()

    assert run.exit_code == 0, run.output
    assert run.report["hosts"]["cs1"]["changed"] == 0, run.report["hosts"]["cs1"]


def test_one_broken_file_among_valid_changes_fails_with_nginxs_message_and_changes_nothing(
        served: Served) -> None:
    before = served.checksums()

    run = served.provision("configset_generation=2", "configset_broken_site=site-b")

    assert run.exit_code == 1, run.output
    (step,) = [s for s in run.report["hosts"]["cs1"]["steps"] if s["status"] == "failed"]
    assert step["label"] == "config set /etc/nginx"
    assert 'unknown directive "this_is_not_a_directive" in /etc/nginx/conf.d/site-b.conf' \
        in step["reason"]
    assert step["reason"].rstrip().endswith("nginx: configuration file /etc/nginx/nginx.conf "
                                            "test failed")
    assert served.checksums() == before
    assert served.get(8081) == ("site-a generation 1\n", "generation 1")
    assert served.get(8082) == ("site-b generation 1\n", "generation 1")


def test_a_later_run_removes_a_stale_conf_d_file_in_the_same_swap(served: Served) -> None:
    assert served.ssh("echo '# left by hand' | sudo tee /etc/nginx/conf.d/stray.conf"
                      ).returncode == 0

    run = served.provision("configset_generation=3", "configset_sites={site-a: 8081}")

    assert run.exit_code == 0, run.output
    steps = {step["label"]: step for step in run.report["hosts"]["cs1"]["steps"]}
    assert steps["config set /etc/nginx"]["reason"] == (
        "/etc/nginx/conf.d/site-a.conf content changed; /etc/nginx/configset-common.conf "
        "content changed; /etc/nginx/conf.d/site-b.conf removed (not in the set); "
        "/etc/nginx/conf.d/stray.conf removed (not in the set)")
    assert served.ssh("ls -A /etc/nginx/conf.d").stdout.split() == ["site-a.conf"]
    assert served.serves(8081, "site-a generation 3\n") == ("site-a generation 3\n",
                                                             "generation 3")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        served.get(8082)
