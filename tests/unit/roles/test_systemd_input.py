"""The systemd role's bad input, each refused before any host is contacted with one message
naming the unit and the field; and the OnCalendar shapes checked on the controller."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner import cli
from provisioner.content.roles import PROJECT_ROOT, load_role
from provisioner.content.variables import check_login_kept, merge_role_variables
from provisioner.errors import ProvisionerError, RoleError
from provisioner.run.engine import RunOptions
from provisioner.secrets.host_store import HostSecret
from provisioner.secrets.values import Secret
from roles.systemd.calendar import calendar_problem
from roles.systemd.units import HARDENING, read_units, systemd_quote
from tests.unit.fakes import host_config

ROLE = load_role(PROJECT_ROOT / "roles" / "systemd")


def unit(**fields: Any) -> dict[str, Any]:
    return {"name": "hello", "command": "/usr/bin/python3 -m http.server 8080", **fields}


def validated(*units: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    variables = merge_role_variables([ROLE], {"systemd_units": list(units), **overrides}, "test")
    assert ROLE.validate is not None
    ROLE.validate(variables)
    return variables


def refused(*units: dict[str, Any], **overrides: Any) -> str:
    with pytest.raises(RoleError) as error:
        validated(*units, **overrides)
    return str(error.value)


def test_a_good_unit_passes_with_its_defaults() -> None:
    (spec,) = read_units(validated(unit()))
    assert (spec.user, spec.group, spec.type, spec.restart, spec.restart_sec) == \
        ("hello", "hello", "simple", "on-failure", 2)
    assert dict(spec.hardening) == HARDENING
    assert spec.started_units == ("hello.service",)


def test_a_unit_with_a_timer_is_a_oneshot_job_its_timer_starts() -> None:
    (spec,) = read_units(validated(unit(timer={"on_calendar": "daily"})))
    assert (spec.type, spec.restart) == ("oneshot", "no")
    assert spec.unit_files == ("hello.service", "hello.timer")
    assert spec.started_units == ("hello.timer",)


def test_an_unknown_field_is_refused_with_the_one_probably_meant() -> None:
    message = refused(unit(comand="/bin/true"))
    assert "unit 'hello'" in message and "'comand'" in message and "'command'" in message


def test_an_unknown_timer_field_is_refused() -> None:
    message = refused(unit(timer={"on_calendar": "daily", "persistant": True}))
    assert "timer" in message and "'persistant'" in message and "'persistent'" in message


@pytest.mark.parametrize("user", ["Hello", "1app", "a b", "x" * 33, "app:x", ""])
def test_a_user_that_is_not_a_valid_name_is_refused(user: str) -> None:
    message = refused(unit(user=user))
    assert "unit 'hello'" in message and f"user {user!r}" in message


def test_a_group_that_is_not_a_valid_name_is_refused() -> None:
    assert "group 'Web Servers'" in refused(unit(group="Web Servers"))


def test_a_unit_whose_name_is_no_user_name_must_give_a_user() -> None:
    message = refused(unit(name="My.App"))
    assert "user ''" in message and "give one" in message
    assert read_units(validated(unit(name="My.App", user="myapp")))[0].user == "myapp"


@pytest.mark.parametrize("expression", ["25:00", "Mon..Fry 02:00", "every day", "*-13-01 00:00",
                                        "*-*-* 02:61", "*:0/0", "Mon 02:00 03:00 04:00"])
def test_an_on_calendar_that_does_not_parse_is_refused(expression: str) -> None:
    message = refused(unit(timer={"on_calendar": expression}))
    assert "unit 'hello'" in message and "on_calendar" in message and repr(expression) in message


def test_each_expression_of_a_list_is_checked() -> None:
    message = refused(unit(timer={"on_calendar": ["daily", "Sat 25:00"]}))
    assert "'Sat 25:00'" in message


@pytest.mark.parametrize("expression", [
    "daily", "hourly", "weekly", "minutely", "quarterly", "*-*-* 02:00", "02:30", "*:0/5",
    "Mon..Fri 08:00", "Sat,Sun 10:00:30", "*-*-01 00:00 UTC", "2026-12-24 18:00:00",
    "*-02~01 00:00", "Mon *-*-* 00:00:00 Europe/Berlin", "*-*-1,15 12:00", "Fri", "weekly UTC",
    "*:*:0/10"])
def test_systemds_calendar_forms_pass(expression: str) -> None:
    assert calendar_problem(expression) is None


@pytest.mark.parametrize("policy", ["sometimes", "on-fail", "yes", True])
def test_a_restart_policy_that_is_not_systemds_is_refused(policy: object) -> None:
    message = refused(unit(restart=policy))
    assert "restart" in message and "on-failure" in message and "on-watchdog" in message


def test_a_type_that_is_not_systemds_is_refused() -> None:
    assert "type 'daemon'" in refused(unit(type="daemon"))


def test_a_oneshot_that_restarts_always_is_refused_as_systemd_would() -> None:
    message = refused(unit(type="oneshot", restart="always"))
    assert "oneshot" in message and "'always'" in message


@pytest.mark.parametrize("name", ["hello.service", "hello.timer"])
def test_a_name_with_its_suffix_is_refused_saying_what_to_give(name: str) -> None:
    assert "give 'hello'" in refused(unit(name=name))


@pytest.mark.parametrize("name", ["-x", "a/b", "a b", "ünit"])
def test_a_name_systemd_would_refuse_is_refused(name: str) -> None:
    assert f"unit name {name!r}" in refused(unit(name=name, user="app"))


def test_the_same_unit_twice_is_refused() -> None:
    assert "'hello' is listed twice" in refused(unit(), unit())


def test_a_command_spanning_lines_is_refused() -> None:
    assert "one line" in refused(unit(command="/bin/true\nExecStartPre=/bin/evil"))


def test_a_missing_command_is_refused() -> None:
    assert "command is required" in refused({"name": "hello"})


@pytest.mark.parametrize("name", ["1PORT", "MY-VAR", "A B"])
def test_an_environment_name_no_shell_accepts_is_refused(name: str) -> None:
    assert f"name {name!r}" in refused(unit(environment={name: "x"}))


def test_an_environment_value_that_is_a_mapping_but_no_secret_is_refused() -> None:
    assert "environment TOKEN" in refused(unit(environment={"TOKEN": {"value": "x"}}))


def test_a_host_secret_is_an_environment_value_by_reference() -> None:
    (spec,) = read_units(validated(unit(environment={"TOKEN": HostSecret("token"),
                                                     "PORT": 8080})))
    assert dict(spec.environment) == {"TOKEN": HostSecret("token"), "PORT": "8080"}


def test_instances_without_a_template_are_refused() -> None:
    assert "name it 'hello@'" in refused(unit(instances=[8000]))


def test_a_templates_instances_are_what_it_starts() -> None:
    (spec,) = read_units(validated(unit(name="app@", user="app", instances=[8000, 8001])))
    assert spec.unit_files == ("app@.service",)
    assert spec.started_units == ("app@8000.service", "app@8001.service")


def test_a_relative_read_write_path_is_refused() -> None:
    assert "'var/lib/x'" in refused(unit(read_write_paths=["var/lib/x"]))


def test_a_dependency_without_its_suffix_is_refused() -> None:
    assert "'postgresql'" in refused(unit(after=["postgresql"]))


def test_a_hardening_option_name_systemd_cannot_have_is_refused() -> None:
    assert "'protect_system'" in refused(unit(hardening={"protect_system": "full"}))


def test_a_units_override_wins_and_null_drops_an_option() -> None:
    (spec,) = read_units(validated(unit(hardening={"ProtectHome": "read-only",
                                                   "PrivateDevices": None,
                                                   "MemoryDenyWriteExecute": True})))
    options = dict(spec.hardening)
    assert options["ProtectHome"] == "read-only" and "PrivateDevices" not in options
    assert options["MemoryDenyWriteExecute"] == "yes" and options["ProtectSystem"] == "strict"


def test_the_hosts_overrides_apply_to_every_unit_below_the_units_own() -> None:
    variables = validated(unit(), unit(name="other", hardening={"ProtectSystem": "full"}),
                          systemd_hardening_overrides={"ProtectSystem": "full",
                                                       "RestrictNamespaces": None})
    first, second = read_units(variables)
    assert dict(first.hardening)["ProtectSystem"] == "full"
    assert "RestrictNamespaces" not in dict(first.hardening)
    assert dict(second.hardening)["ProtectSystem"] == "full"


def test_a_list_command_is_quoted_for_systemd() -> None:
    (spec,) = read_units(validated(unit(command=["/bin/sh", "-c", 'echo "$HOME" 100%'])))
    assert spec.command == '/bin/sh -c "echo \\"$$HOME\\" 100%%"'


@pytest.mark.parametrize(("argument", "word"), [
    ("plain", "plain"), ("two words", '"two words"'), ("", '""'), ("a\\b", '"a\\\\b"'),
    ("%i", "%%i"), ("$X", "$$X")])
def test_systemd_quote(argument: str, word: str) -> None:
    assert systemd_quote(argument) == word


def login_checked(*units: dict[str, Any]) -> None:
    config = host_config(roles=("systemd",), variables={"systemd_units": list(units)})
    check_login_kept([ROLE], config, merge_role_variables([ROLE], config.vars, "test"))


@pytest.mark.parametrize("fields", [
    {"command": ["/usr/bin/app", "--token", Secret("s3cret", "env:TOKEN")]},
    {"service_options": {"Environment": Secret("TOKEN=s3cret", "env:TOKEN")}},
    {"description": HostSecret("token")}])
def test_a_secret_anywhere_but_the_environment_is_refused_unshown(fields: dict[str, Any]
                                                                  ) -> None:
    with pytest.raises(RoleError) as error:
        login_checked(unit(**fields))
    assert "readable by every user" in str(error.value) and "environment" in str(error.value)
    assert "s3cret" not in str(error.value)


def test_a_secret_in_the_environment_passes_the_check() -> None:
    login_checked(unit(environment={"TOKEN": Secret("s3cret", "env:TOKEN")}))


def test_a_host_secret_in_an_option_is_refused_by_validate_too() -> None:
    assert "secret reference" in refused(unit(service_options={"X": HostSecret("token")}))


def jobs_for(tmp_path: Path, units: list[dict[str, Any]]) -> int:
    """The run's own checks before it logs in (cli.select_jobs), against a host at a TEST-NET
    address nothing answers."""
    (tmp_path / "key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"
                                  "-----END OPENSSH PRIVATE KEY-----\n")
    (tmp_path / "token").write_text("s3cret\n")
    document = {"defaults": {"user": "admin", "ssh": {"identity_file": "key"}},
                "hosts": {"app1": {"address": "192.0.2.30", "roles": ["systemd"],
                                   "vars": {"systemd_units": units}}}}
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(document))
    return len(cli.select_jobs(cli.load(str(path)), "", "", RunOptions()))


def test_a_good_inventory_passes_the_runs_checks(tmp_path: Path) -> None:
    assert jobs_for(tmp_path, [unit(environment={"TOKEN": {"secret": "file:token"}})]) == 1


@pytest.mark.parametrize(("fields", "named"), [
    ({"commnad": "/bin/true"}, "'commnad'"), ({"user": "Web Server"}, "user 'Web Server'"),
    ({"timer": {"on_calendar": "Mon..Fry 02:00"}}, "on_calendar 'Mon..Fry 02:00'"),
    ({"restart": "sometimes"}, "restart 'sometimes'"),
    ({"command": ["/usr/bin/app", {"secret": "file:token"}]}, "command holds a secret")])
def test_bad_input_is_refused_before_any_contact(tmp_path: Path, fields: dict[str, Any],
                                                 named: str) -> None:
    with pytest.raises(ProvisionerError) as error:
        jobs_for(tmp_path, [unit(**fields)])
    assert named in str(error.value) and "s3cret" not in str(error.value)
