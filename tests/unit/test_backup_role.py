"""The backups role: its variables judged before contact, and what it writes to the host."""

from __future__ import annotations

import re
from typing import Any

import pytest

from provisioner.content.roles import PROJECT_ROOT, load_role
from provisioner.content.variables import check_login_kept, merge_role_variables
from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.view import InventoryView
from provisioner.secrets.host_store import HostSecret
from provisioner.secrets.redaction import redact_diff
from provisioner.secrets.values import Secret, reveal_all
from provisioner.step import Probed, Step
from roles.backups import role as ROLE_MODULE
from tests.unit.fakes import host_config, no_facts

ROLE = load_role(PROJECT_ROOT / "roles" / "backups")
KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n" \
      "-----END OPENSSH PRIVATE KEY-----"
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKto/2Oc8WcpGWsMmiQWxvxnxd8GUr8yNnKWbir/OQPA"
RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
OFFHOST: dict[str, Any] = {"host": "vault1", "private_key": Secret(KEY, "file:key"),
                           "host_key": HOST_KEY}
INVENTORY = InventoryView.of_hosts([host_config("db1", "192.0.2.20", groups=["db"]),
                                    host_config("vault1", "192.0.2.30", groups=["backup"])])


def merged(**inventory: Any) -> dict[str, Any]:
    return merge_role_variables([ROLE], {"backups_databases": ["app"], **inventory}, "test")


def role_steps(**inventory: Any) -> dict[str, Step]:
    config = host_config("db1", "192.0.2.20", groups=["db"], roles=["backups"])
    host = Host(config, merged(**inventory), no_facts, inventory=INVENTORY, show_diff=True)
    return {step.label: step for step in ROLE.steps(host.for_role(ROLE.template_dir))}


def written(step: Step) -> str:
    """What a file step writes to a host that lacks the file (from its diff)."""
    plan = step.decide(Probed("absent"))
    assert plan.diff is not None
    return "".join(line[1:] + "\n" for line in plan.diff.splitlines()[2:]
                   if line.startswith("+"))


@pytest.mark.parametrize(("inventory", "message"), [
    ({"backups_schedule": "2am"}, "backups_schedule is '2am', which is not a schedule"),
    ({"backups_verify_schedule": "*-*-31 04:00"}, "backups_verify_schedule is '\\*-\\*-31"),
    ({"backups_databases": ["app; rm -rf /"]}, "backups_databases holds the database name"),
    ({"backups_databases": []}, "backups_databases is empty and no postgres_databases"),
    ({"backups_keep_daily": 0}, "backups_keep_daily is 0; it must be a whole number, at least 1"),
    ({"backups_keep_weekly": -1}, "backups_keep_weekly is -1"),
    ({"backups_grace_hours": 1.5}, "backups_grace_hours is 1.5; it must be a whole number"),
    ({"backups_directory": "/var/backups/provisioner/db"}, "inside /var/backups/provisioner"),
    ({"backups_directory": "backups"}, "it must be an absolute path"),
    ({"backups_offhost": {**OFFHOST, "hots": "x"}}, "backups_offhost has unknown key\\(s\\) hots"),
    ({"backups_offhost": {**OFFHOST, "private_key": "hunter2"}},
     "backups_offhost.private_key is \\(not shown\\)"),
    ({"backups_offhost": {**OFFHOST, "host_key": "AAAA"}}, "backups_offhost.host_key is 'AAAA'"),
    ({"backups_offhost": {**OFFHOST, "port": 0}}, "backups_offhost.port is 0"),
    ({"backups_offhost": {**OFFHOST, "age_recipient": "age1short"}},
     "backups_offhost.age_recipient is 'age1short'"),
    # One character of a real recipient changed: the shape is right, the checksum is not.
    ({"backups_offhost": {**OFFHOST, "age_recipient": RECIPIENT[:20] + "q" + RECIPIENT[21:]}},
     r"which is no age recipient: its checksum does not match \(a mistyped or changed "
     r"character\)\. Copy the public key age-keygen printed"),
    ({"backups_offhost": {**OFFHOST, "private_key": HostSecret("backup_key")}},
     "backups_offhost.private_key names a host secret, which is a random value"),
    ({"backups_keep_on_demand": 0}, "backups_keep_on_demand is 0; it must be a whole number, "
     "at least 1"),
    ({"backups_offhost_timeout": 5}, "backups_offhost_timeout is 5; it must be a whole number, "
     "at least 10"),
    ({"backups_run_timeout_hours": 0}, "backups_run_timeout_hours is 0"),
    # The restore test's scratch database is dropped WITH (FORCE): no managed one may be it.
    ({"backups_databases": ["provisioner_restore_test"]},
     "backups_databases holds the database 'provisioner_restore_test'; names beginning "
     "provisioner_restore_ are the backup program's scratch databases"),
    ({"backups_databases": ["app"], "postgres_databases": [
        {"name": "app"}, {"name": "provisioner_restore_x", "owner": "app"}]},
     "postgres_databases holds the database 'provisioner_restore_x'"),
])
def test_a_bad_variable_is_refused_before_contact_naming_it(inventory: dict[str, Any],
                                                            message: str) -> None:
    with pytest.raises(RoleError, match=message):
        merged(**inventory)


def test_a_refused_private_key_is_never_repeated() -> None:
    with pytest.raises(RoleError) as refused:
        merged(backups_offhost={**OFFHOST, "private_key": Secret("hunter2", "env:K")})

    assert "hunter2" not in str(refused.value)


def test_a_private_key_written_as_text_is_refused_before_contact_saying_how_to_reference_it(
        ) -> None:
    variables = {"backups_databases": ["app"], "backups_offhost": {**OFFHOST, "private_key": KEY}}
    config = host_config("db1", "192.0.2.20", groups=["db"], roles=["backups"],
                         variables=variables)

    with pytest.raises(RoleError) as refused:
        check_login_kept([ROLE], config, merged(**variables))

    message = str(refused.value)
    assert message.startswith("host db1: backups_offhost.private_key is written in the "
                              "inventory as text (not shown); a private key must be a secret "
                              "reference")
    assert "{secret: file:keys/db1_backup} (or {secret: env:NAME})" in message
    assert "PRIVATE KEY" not in message and "b3Bl" not in message


def test_a_private_key_given_as_a_secret_reference_is_accepted() -> None:
    variables = {"backups_databases": ["app"], "backups_offhost": OFFHOST}
    config = host_config("db1", "192.0.2.20", groups=["db"], roles=["backups"],
                         variables=variables)

    check_login_kept([ROLE], config, merged(**variables))


def test_a_changed_private_key_shows_no_key_material_in_the_diff() -> None:
    new_key = KEY.replace("b3BlbnNzaC1rZXktdjEAAAAA", "c2VjcmV0LW5ldy1rZXktbWF0ZXJpYWw")
    step = role_steps(backups_offhost={**OFFHOST, "private_key": Secret(new_key, "file:key")})[
        "file /etc/provisioner-backup/offhost_key"]
    old = KEY + "\n"

    plan = step.decide(Probed(f"regular file|root|root|600|{len(old)}\n{old}"))
    shown = redact_diff(plan.diff or "", step.secrets)  # as the engine shows a diff

    assert plan.action is not None and plan.diff
    for line in (*KEY.splitlines(), *new_key.splitlines()):
        assert line not in shown


def test_the_managed_databases_of_the_postgres_role_are_dumped_when_none_are_listed() -> None:
    steps = role_steps(backups_databases=[],
                       postgres_databases=[{"name": "app"}, {"name": "billing", "owner": "b"}])

    config = written(steps["file /etc/provisioner-backup/config"])
    assert "DATABASES='app billing'\n" in config


def test_the_config_quotes_every_value_for_the_program_to_source() -> None:
    config = written(role_steps()["file /etc/provisioner-backup/config"])

    assert config.splitlines()[1:] == [
        "BACKUP_ROOT=/var/backups/postgresql-dumps", "DATABASES=app", "KEEP_DAILY=7",
        "KEEP_WEEKLY=4", "KEEP_ON_DEMAND=3", "VERIFY_TABLES=5", "OFFHOST_TIMEOUT=300",
            "OFFHOST_TARGET=''",
        "OFFHOST_PORT=22", "AGE_RECIPIENT=''",
        "OFFHOST_KNOWN_HOSTS=/var/lib/provisioner-backup/known_hosts",
        "OFFHOST_CHECKING=accept-new", "PGBOUNCER_PORT=''"]


def test_without_an_offhost_copy_no_key_stays_on_the_host() -> None:
    steps = role_steps()

    assert steps["absent /etc/provisioner-backup/offhost_key"].decide(
        Probed("regular file|root|root|600|abc")).action is not None


def test_the_offhost_copy_goes_to_the_backup_hosts_inventory_address_with_its_key_pinned(
        ) -> None:
    steps = role_steps(backups_offhost=OFFHOST)

    config = written(steps["file /etc/provisioner-backup/config"])
    assert "OFFHOST_TARGET=pgbackup@192.0.2.30\n" in config
    assert "OFFHOST_CHECKING=yes\n" in config
    assert written(steps["file /etc/provisioner-backup/known_hosts"]) == \
        f"192.0.2.30 {HOST_KEY}\n"


def test_a_backup_host_on_another_port_is_pinned_under_that_port() -> None:
    steps = role_steps(backups_offhost={**OFFHOST, "port": 2222})

    assert written(steps["file /etc/provisioner-backup/known_hosts"]).startswith(
        "[192.0.2.30]:2222 ")


def test_without_a_pinned_host_key_the_first_contact_is_trusted_and_remembered() -> None:
    steps = role_steps(backups_offhost={**OFFHOST, "host_key": ""})

    config = written(steps["file /etc/provisioner-backup/config"])
    assert "OFFHOST_CHECKING=accept-new\n" in config
    assert "absent /etc/provisioner-backup/known_hosts" in steps


def test_the_private_key_is_written_root_only_and_never_shown() -> None:
    step = role_steps(backups_offhost=OFFHOST)["file /etc/provisioner-backup/offhost_key"]
    plan = step.decide(Probed("absent"))

    assert plan.action is not None and "0600" in plan.action
    assert KEY in [secret.reveal() for secret in step.secrets]


def test_an_age_recipient_installs_age_and_reaches_the_program() -> None:
    steps = role_steps(backups_offhost={**OFFHOST, "age_recipient": RECIPIENT})

    assert "age" in next(label for label in steps if label.startswith("packages"))
    assert f"AGE_RECIPIENT={RECIPIENT}\n" in written(steps["file /etc/provisioner-backup/config"])


def test_a_backup_host_the_inventory_lacks_is_a_role_error() -> None:
    with pytest.raises(RoleError, match=r"backups_offhost\.host is 'vault9', which is no host"):
        role_steps(backups_offhost={**OFFHOST, "host": "vault9"})


def test_the_timers_carry_the_inventory_schedules() -> None:
    steps = role_steps(backups_schedule="Mon..Fri 01:30", backups_verify_schedule="weekly")

    assert "OnCalendar=Mon..Fri *-*-* 01:30:00\n" in written(
        steps["template /etc/systemd/system/provisioner-backup.timer"])
    assert "OnCalendar=Mon *-*-* 00:00:00\n" in written(
        steps["template /etc/systemd/system/provisioner-backup-verify.timer"])


def test_backup_now_has_its_own_unit_marking_its_archives_on_demand() -> None:
    unit = written(role_steps()["template /etc/systemd/system/provisioner-backup-ondemand.service"])

    assert "ExecStart=/usr/local/sbin/provisioner-backup now --on-demand\n" in unit
    assert "StandardOutput=truncate:/var/lib/provisioner-backup/ondemand.log\n" in unit
    assert "provisioner-backup-ondemand.timer" not in " ".join(role_steps())


def test_the_restore_test_with_no_archive_yet_is_no_failure_of_its_unit() -> None:
    unit = written(role_steps()["template /etc/systemd/system/provisioner-backup-verify.service"])

    assert "SuccessExitStatus=4\n" in unit


def test_a_restore_on_a_host_with_pgbouncer_reaches_its_console_port() -> None:
    config = host_config("db1", "192.0.2.20", groups=["db"], roles=["backups", "pgbouncer"])
    host = Host(config, {**merged(), "pgbouncer_listen_port": 6433}, no_facts,
                inventory=INVENTORY, show_diff=True)
    steps = {step.label: step for step in ROLE.steps(host.for_role(ROLE.template_dir))}

    assert "PGBOUNCER_PORT=6433\n" in written(steps["file /etc/provisioner-backup/config"])


def test_each_service_runs_its_own_command_of_the_program() -> None:
    steps = role_steps()

    assert "ExecStart=/usr/local/sbin/provisioner-backup now\n" in written(
        steps["template /etc/systemd/system/provisioner-backup.service"])
    assert "ExecStart=/usr/local/sbin/provisioner-backup verify\n" in written(
        steps["template /etc/systemd/system/provisioner-backup-verify.service"])


def test_every_command_the_program_lists_is_one_it_dispatches() -> None:
    program = written(role_steps()["program /usr/local/sbin/provisioner-backup [controls §10]"])

    listed = re.findall(r"^#   provisioner-backup ([a-z-]+)", program, re.MULTILINE)
    dispatched = re.findall(r"^        ([a-z-]+)\) cmd_", program, re.MULTILINE)
    assert "run-now" in listed
    assert sorted(listed) == sorted(dispatched)


def test_the_program_is_a_bash_script_with_no_template_left_in_it() -> None:
    program = written(role_steps()["program /usr/local/sbin/provisioner-backup [controls §10]"])

    assert program.startswith("#!/bin/bash\n")
    assert "{%" not in program and "{{" not in program


def test_a_backup_host_the_inventory_lacks_is_refused_before_contact() -> None:
    with pytest.raises(RoleError, match=r"backups_offhost\.host is 'vault9'"):
        ROLE_MODULE.validate_inventory(
            reveal_all(merged(backups_offhost={**OFFHOST, "host": "vault9"})), INVENTORY)


def test_a_hung_run_is_ended_and_a_scheduled_one_meeting_another_waits_then_is_retried() -> None:
    steps = role_steps(backups_run_timeout_hours=3)

    for unit in ("provisioner-backup", "provisioner-backup-verify"):
        service = written(steps[f"template /etc/systemd/system/{unit}.service"])
        assert "TimeoutStartSec=3h\n" in service
        assert "Environment=PROVISIONER_BACKUP_LOCK_WAIT=1800\n" in service
        assert ("Restart=on-failure\nRestartPreventExitStatus=1 2 3 SIGTERM SIGKILL\n"
                "RestartSec=20min\n") in service
    on_demand = written(steps["template /etc/systemd/system/provisioner-backup-ondemand.service"])
    assert "TimeoutStartSec=3h\n" in on_demand
    assert "LOCK_WAIT" not in on_demand  # backup.now is refused at once, and says so


def test_the_offhost_copy_gives_up_on_a_backup_host_that_stops_answering() -> None:
    steps = role_steps(backups_offhost={**OFFHOST}, backups_offhost_timeout=60)

    assert "OFFHOST_TIMEOUT=60\n" in written(steps["file /etc/provisioner-backup/config"])
    program = written(steps[f"program {ROLE_MODULE.PROGRAM} [controls §10]"])
    assert '--timeout="$OFFHOST_TIMEOUT"' in program
    assert "-o ServerAliveInterval=$alive -o ServerAliveCountMax=3" in program


def test_a_copy_to_this_host_itself_is_refused_before_contact() -> None:
    variables = {"backups_databases": ["app"],
                 "backups_offhost": {**OFFHOST, "host": "db1"}}
    config = host_config("db1", "192.0.2.20", groups=["db"], roles=["backups"],
                         variables=variables)

    with pytest.raises(RoleError, match=r"^host db1: backups_offhost\.host is 'db1', this host "
                                        r"itself: the copy must go to another host"):
        check_login_kept([ROLE], config, merged(**variables))
