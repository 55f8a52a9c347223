"""The systemd role on real machines: a Python HTTP server running as its own user with an
environment file holding a host secret, and a timer whose job writes as its own user.

The server answers with its greeting and its uid, so a request from the controller shows the
environment and the account in effect; ``systemctl show`` and the kernel's /proc status show the
hardening. A changed environment restarts only that service; an invalid unit fails the run with
systemd's words while the old one keeps running; a name a package's unit has is refused; a unit
taken out of the inventory is stopped, disabled and removed. A second run changes nothing in one
round trip, ``--check`` on a fresh host (sd2) changes nothing, and the spec passes. The tests run
in order, each from the state the one before left.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioner import sandbox
from tests.integration.conftest import (
    Invocation,
    edit_inventory,
    invoke_task,
    own_machines,
    root_output,
)

pytestmark = pytest.mark.integration

#: One line of Python (a unit's command is one line): answers GET with $GREETING and its uid.
SERVER = ("import http.server as s, os; H = type('H', (s.BaseHTTPRequestHandler,), {'do_GET': "
          "lambda self: (self.send_response(200), self.end_headers(), self.wfile.write("
          "(os.environ['GREETING'] + ' ' + str(os.getuid())).encode())), 'log_message': "
          "lambda self, *a: None}); s.HTTPServer(('0.0.0.0', 8080), H).serve_forever()")


def web_unit(**fields: Any) -> dict[str, Any]:
    return {"name": "web", "command": ["/usr/bin/python3", "-c", SERVER],
            "environment": {"GREETING": "hello", "WEB_TOKEN": {"secret": "host:web_token"}},
            "hardening": {"ProtectHome": "read-only"}, **fields}


TICK = {"name": "tick", "command": ["/bin/sh", "-c", "date >> /var/lib/tick/runs"],
        "service_options": {"StateDirectory": "tick"},
        "timer": {"on_calendar": "*:*:0/10", "accuracy_sec": 1}}


@dataclass
class Units:
    machine: sandbox.Machine
    fresh: sandbox.Machine
    inventory: Path

    def provision(self, *arguments: str, host: str = "sd1") -> Invocation:
        started = time.monotonic()
        run = invoke_task("provision", "--host", host, *arguments, inventory=self.inventory,
                          report=self.inventory.parent / "report.json", timeout=300)
        print(f"provision {host} {' '.join(arguments)}: {time.monotonic() - started:.1f} s, "
              f"exit {run.exit_code}, round trips {round_trips(run)}")
        return run

    def set_units(self, *units: dict[str, Any]) -> None:
        def edit(data: dict[str, Any]) -> None:
            for host in data["hosts"].values():
                host["vars"]["systemd_units"] = list(units)

        edit_inventory(self.inventory, edit)

    def root(self, command: str) -> str:
        return root_output(self.machine, command)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        flags = " ".join(f"-p {name}" for name in properties)
        return dict(line.split("=", 1) for line in
                    self.root(f"systemctl show {flags} -- {unit}").splitlines() if "=" in line)

    def main_pid(self, unit: str = "web.service") -> str:
        return self.show(unit, "MainPID")["MainPID"]

    def get(self) -> str:
        with urllib.request.urlopen(f"http://{self.machine.address}:8080/", timeout=10) as answer:
            return str(answer.read().decode())


def round_trips(run: Invocation) -> int:
    return int(sum(host.get("round_trips", 0) for host in run.report.get("hosts", {}).values()))


def changed(run: Invocation) -> int:
    return int(sum(host.get("changed", 0) for host in run.report.get("hosts", {}).values()))


@pytest.fixture(scope="module")
def units(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Units]:
    with own_machines(tmp_path_factory, "sd", count=2) as (booted, inventory):
        machine, fresh = booted
        names = {machine.name: "sd1", fresh.name: "sd2"}

        def edit(data: dict[str, Any]) -> None:
            data["hosts"] = {names[name]: {**host, "groups": [], "roles": ["systemd"],
                                           "vars": {"host_secrets": {"web_token": {}}}}
                             for name, host in data["hosts"].items()}

        edit_inventory(inventory, edit)
        tier = Units(machine, fresh, inventory)
        tier.set_units(web_unit(), TICK)
        yield tier


def test_check_on_a_fresh_host_changes_nothing(units: Units) -> None:
    run = units.provision("--check", host="sd2")
    assert run.exit_code == 0, run.output
    assert changed(run) > 0
    left = root_output(units.fresh, "ls /etc/systemd/system; getent passwd web || true; "
                                    "ls /var/lib/provisioner/units /etc/provisioner/units "
                                    "2>&1 || true")
    assert "web.service" not in left and "web:" not in left
    assert left.count("No such file or directory") == 2


def test_first_run_starts_the_service_and_the_timer(units: Units) -> None:
    run = units.provision()
    assert run.exit_code == 0, run.output
    assert units.show("web.service", "ActiveState", "UnitFileState") == {
        "ActiveState": "active", "UnitFileState": "enabled"}
    assert units.show("tick.timer", "ActiveState")["ActiveState"] == "active"


def test_the_service_answers_as_its_own_user_with_its_environment(units: Units) -> None:
    uid = units.root("id -u web").strip()
    assert uid != "0"
    assert units.get() == f"hello {uid}"
    assert units.root("getent passwd web").strip().endswith(":/nonexistent:/usr/sbin/nologin")


def test_the_hardening_is_in_effect(units: Units) -> None:
    shown = units.show("web.service", "User", "NoNewPrivileges", "ProtectSystem",
                       "ProtectHome", "PrivateTmp", "PrivateDevices", "CapabilityBoundingSet",
                       "RestrictNamespaces", "RestrictSUIDSGID", "UMask")
    assert shown == {"User": "web", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
                     "ProtectHome": "read-only", "PrivateTmp": "yes", "PrivateDevices": "yes",
                     "CapabilityBoundingSet": "", "RestrictNamespaces": "yes",
                     "RestrictSUIDSGID": "yes", "UMask": "0027"}
    status = units.root(f"cat /proc/{units.main_pid()}/status")
    assert "NoNewPrivs:\t1" in status and "CapBnd:\t0000000000000000" in status
    # ProtectSystem=strict: in the server's own mount namespace even root cannot write /etc.
    tried = units.root(f"nsenter -t {units.main_pid()} -m sh -c 'touch /etc/sd-probe' 2>&1; "
                       "ls /etc/sd-probe 2>&1 || true")
    assert "Read-only file system" in tried and "No such file" in tried


def test_the_environment_file_is_private_and_the_only_place_of_the_secret(units: Units
                                                                        ) -> None:
    token = units.root("cat /etc/provisioner/secrets/web_token").strip()
    assert units.root("stat -c '%U:%G %a' /etc/provisioner/units/web.env "
                      "/etc/provisioner/units").split("\n")[:2] == ["root:root 600",
                                                                   "root:root 700"]
    environ = units.root(f"tr '\\0' '\\n' < /proc/{units.main_pid()}/environ")
    assert f"WEB_TOKEN={token}" in environ.splitlines()
    assert token not in units.root("cat /etc/systemd/system/web.service")
    assert token not in units.provision("--diff").output


def test_the_timer_is_scheduled_and_its_job_runs_as_its_user(units: Units) -> None:
    assert units.show("tick.timer", "NextElapseUSecRealtime")["NextElapseUSecRealtime"]
    deadline = time.monotonic() + 30
    while "runs" not in units.root("ls /var/lib/tick/ 2>/dev/null || true"):
        assert time.monotonic() < deadline, "the timer's job never ran"
        time.sleep(1)
    assert units.root("stat -c %U /var/lib/tick/runs").strip() == "tick"


def test_second_run_changes_nothing_in_one_round_trip(units: Units) -> None:
    before = units.main_pid()
    run = units.provision()
    assert run.exit_code == 0, run.output
    assert (changed(run), round_trips(run)) == (0, 1)
    assert units.main_pid() == before


def test_a_changed_environment_restarts_only_its_service(units: Units) -> None:
    web, timer = units.main_pid(), units.show("tick.timer", "ActiveEnterTimestamp")
    units.set_units(web_unit(environment={"GREETING": "changed",
                                          "WEB_TOKEN": {"secret": "host:web_token"}}), TICK)
    token = units.root("cat /etc/provisioner/secrets/web_token").strip()
    checked = units.provision("--check", "--diff")
    assert checked.exit_code == 0 and '+GREETING="changed"' in checked.output
    assert "would run (notified by environment" in checked.output
    assert token not in checked.output and units.main_pid() == web
    run = units.provision()
    assert run.exit_code == 0, run.output
    assert "handler systemd:restart-changed" in run.output
    assert units.main_pid() != web
    assert units.get().startswith("changed ")
    assert units.show("tick.timer", "ActiveEnterTimestamp") == timer
    assert changed(units.provision()) == 0


@pytest.mark.parametrize(("unit", "systemd_says"), ids=["bad-value", "no-such-command"], argvalues=[
    (web_unit(environment={"GREETING": "changed", "WEB_TOKEN": {"secret": "host:web_token"}},
              hardening={"ProtectSystem": "bogus"}),
     # systemd 252 and 257 word the rest differently
     ("/etc/systemd/system/web.service:21: Failed to parse ", "bogus")),
    (web_unit(environment={"GREETING": "changed", "WEB_TOKEN": {"secret": "host:web_token"}},
              command="/usr/bin/does-not-exist"),
     ("Command /usr/bin/does-not-exist is not executable",))])
def test_an_invalid_unit_fails_with_systemds_words_and_the_old_keeps_running(
        units: Units, unit: dict[str, Any], systemd_says: tuple[str, ...]) -> None:
    before = units.main_pid()
    live = units.root("cat /etc/systemd/system/web.service")
    units.set_units(unit, TICK)
    run = units.provision()
    assert run.exit_code == 1
    assert "no live file was changed" in run.output
    assert all(words in run.output for words in systemd_says)
    assert units.main_pid() == before and units.get().startswith("changed ")
    assert units.root("cat /etc/systemd/system/web.service") == live


def test_a_name_a_packages_unit_has_is_refused(units: Units) -> None:
    units.set_units(web_unit(environment={"GREETING": "changed",
                                          "WEB_TOKEN": {"secret": "host:web_token"}}),
                    TICK, {"name": "ssh", "user": "root", "command": "/bin/true"})
    run = units.provision()
    assert run.exit_code == 1
    assert "/lib/systemd/system/ssh.service" in run.output and "shadow" in run.output
    assert units.root("ls /etc/systemd/system/ssh.service 2>&1 || true").endswith(
        "No such file or directory\n")


def test_a_unit_taken_out_of_the_inventory_is_removed_from_the_host(units: Units) -> None:
    units.set_units(web_unit(environment={"GREETING": "changed",
                                          "WEB_TOKEN": {"secret": "host:web_token"}}))
    run = units.provision()
    assert run.exit_code == 0, run.output
    assert "stale tick.service, tick.timer stopped, disabled and removed" in run.output
    for unit in ("tick.timer", "tick.service"):
        assert units.show(unit, "LoadState")["LoadState"] == "not-found"
    assert "tick" not in units.root("ls /etc/systemd/system /etc/systemd/system/*.wants")
    assert units.root("cat /var/lib/provisioner/units/systemd/manifest") == "web.service\n"
    assert changed(units.provision()) == 0


def test_a_service_that_becomes_a_timers_job_is_no_longer_started_at_boot(units: Units
                                                                          ) -> None:
    web = web_unit(environment={"GREETING": "changed", "WEB_TOKEN": {"secret": "host:web_token"}})
    units.set_units(web, {"name": "job", "command": ["/bin/sleep", "600"]})
    assert units.provision().exit_code == 0
    assert units.root("systemctl is-enabled job.service").strip() == "enabled"
    units.set_units(web, {"name": "job", "command": "/bin/true",
                          "timer": {"on_calendar": "daily"}})
    run = units.provision()
    assert run.exit_code == 0, run.output
    assert units.root("systemctl is-enabled job.service || true").strip() == "static"
    assert units.show("job.service", "ActiveState")["ActiveState"] == "inactive"
    assert units.show("job.timer", "ActiveState")["ActiveState"] == "active"
    assert changed(units.provision()) == 0


def test_a_templates_instances_start_restart_together_and_go_one_by_one(units: Units
                                                                         ) -> None:
    """What the app role builds on: app@.service with one instance per port."""
    web = web_unit(environment={"GREETING": "changed", "WEB_TOKEN": {"secret": "host:web_token"}})

    def echo(greeting: str, *ports: int) -> dict[str, Any]:
        return {"name": "echo@", "user": "echo", "environment": {"GREETING": greeting},
                # text, not a list: a list's words are literal, and %i is systemd's
                "command": "/usr/bin/python3 -m http.server %i --bind 127.0.0.1",
                "instances": list(ports)}

    units.set_units(web, echo("one", 9001, 9002))
    assert units.provision().exit_code == 0
    first = [units.main_pid(f"echo@{port}.service") for port in (9001, 9002)]
    assert "0" not in first
    units.set_units(web, echo("two", 9001, 9002))
    assert units.provision().exit_code == 0
    second = [units.main_pid(f"echo@{port}.service") for port in (9001, 9002)]
    assert all(after not in ("0", before) for before, after in zip(first, second, strict=True))
    units.set_units(web, echo("two", 9001))
    run = units.provision()
    assert run.exit_code == 0 and "stale echo@9002.service" in run.output
    assert units.show("echo@9002.service", "ActiveState")["ActiveState"] == "inactive"
    assert units.main_pid("echo@9001.service") == second[0]
    assert changed(units.provision()) == 0


def test_the_verify_spec_passes(units: Units) -> None:
    run = invoke_task("verify", "--host", "sd1", inventory=units.inventory,
                      report=units.inventory.parent / "report.json")
    assert run.exit_code == 0, run.output
    assert "7 passed" in run.output and "skipped" not in run.output
