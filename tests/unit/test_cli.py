"""The command line: --set parsing, inventory choice, exit codes and help of the invoke tasks."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from invoke import Collection

from provisioner import cli
from provisioner.cli import DEFAULT_INVENTORY, inventory_path, parse_cli_vars
from provisioner.cli import sandbox as sandbox_cli
from provisioner.content.roles import PROJECT_ROOT
from provisioner.errors import InventoryError, ProvisionerError
from provisioner.login_keys import private_key_is_encrypted
from provisioner.output.run_report import write_report
from provisioner.run.engine import RunOptions
from provisioner.run.results import RunResult


def load_tasks() -> Collection:
    spec = importlib.util.spec_from_file_location("tasks_under_test", PROJECT_ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ns  # type: ignore[no-any-return]


TASKS = load_tasks()


def invoke(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, **(env or {})})


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.yml"
    path.write_text(textwrap.dedent(text))
    return path


# --- parse_cli_vars ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("ufw_ssh_port=2222", {"ufw_ssh_port": 2222}),
        ("ufw_ssh_limit=false", {"ufw_ssh_limit": False}),
        ("fail2ban_ignoreip=[10.0.0.0/8, 192.0.2.1]",
         {"fail2ban_ignoreip": ["10.0.0.0/8", "192.0.2.1"]}),
        ("ratio=0.5", {"ratio": 0.5}),
        ("name=web server", {"name": "web server"}),
        ("empty=", {"empty": ""}),
        ("expr=a=b", {"expr": "a=b"}),
        ("  spaced  =1", {"spaced": 1}),
        ("broken=[unclosed", {"broken": "[unclosed"}),
        ("quoted='22'", {"quoted": "22"}),
    ],
    ids=["number", "boolean", "list", "float", "string", "empty-value", "equals-in-value",
         "key-whitespace", "invalid-yaml-kept-as-text", "quoted-number-is-text"],
)
def test_parse_cli_vars_reads_values_as_yaml_scalars(assignment: str,
                                                     expected: dict[str, Any]) -> None:
    assert parse_cli_vars([assignment]) == expected


def test_parse_cli_vars_later_assignment_wins() -> None:
    assert parse_cli_vars(["a=1", "a=2"]) == {"a": 2}


@pytest.mark.parametrize("assignment", ["ufw_ssh_port", "=22", " =22", ""],
                         ids=["no-equals", "no-name", "blank-name", "empty"])
def test_parse_cli_vars_without_name_and_equals_is_an_error(assignment: str) -> None:
    with pytest.raises(ProvisionerError, match=r"--set .* must look like name=value"):
        parse_cli_vars([assignment])


# --- inventory_path ---------------------------------------------------------------------------


def test_inventory_path_given_wins_over_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_INVENTORY", str(tmp_path / "env.yml"))

    assert inventory_path(str(tmp_path / "given.yml")) == tmp_path / "given.yml"


def test_inventory_path_falls_back_to_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_INVENTORY", str(tmp_path / "env.yml"))

    assert inventory_path("") == tmp_path / "env.yml"


@pytest.mark.parametrize("environment", [None, ""], ids=["unset", "empty"])
def test_inventory_path_defaults_to_the_sandbox_inventory(
        monkeypatch: pytest.MonkeyPatch, environment: str | None) -> None:
    if environment is None:
        monkeypatch.delenv("PROVISIONER_INVENTORY", raising=False)
    else:
        monkeypatch.setenv("PROVISIONER_INVENTORY", environment)

    assert inventory_path("") == DEFAULT_INVENTORY == PROJECT_ROOT / "inventories/sandbox.yml"


def test_relative_inventory_path_is_resolved_against_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)

    assert inventory_path("inv/prod.yml") == tmp_path / "inv" / "prod.yml"


# --- invoke exit codes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken_inventory_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[
        Path, subprocess.CompletedProcess[str]]:
    path = write(tmp_path_factory.mktemp("broken"), """\
        hosts:
          web1:
            address: 10.0.0.1
            roles: [ufw]
            colour: blue
        """)
    return path, invoke("provision", "--inventory", str(path))


def test_provision_with_a_broken_inventory_exits_2(
        broken_inventory_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    assert broken_inventory_run[1].returncode == 2


def test_provision_with_a_broken_inventory_prints_one_paragraph_naming_file_and_key(
        broken_inventory_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    path, completed = broken_inventory_run

    assert completed.stderr.strip() == (
        f"error: Inventory error in {path}, at hosts.web1.colour: unknown key 'colour' under "
        "hosts.web1; the keys allowed there are address, port, user, groups, roles, vars, ssh; "
        "see README.md 'Inventory' for the keys")


def test_provision_with_a_broken_inventory_shows_no_traceback(
        broken_inventory_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    completed = broken_inventory_run[1]

    assert "Traceback" not in completed.stdout + completed.stderr


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("hosts:\n  web1:\n    address: 999.1.1.1\n    roles: [ufw]\n", "hosts.web1.address"),
        ("hosts:\n  web1:\n    address: 10.0.0.1\n    roles: [no_such_role]\n", "hosts.web1.roles"),
        ("hosts:\n  web1:\n    address: 10.0.0.1\n    roles: [ufw\n", "line"),
    ],
    ids=["bad-address", "unknown-role", "yaml-syntax"],
)
def test_provision_inventory_mistakes_exit_2_without_traceback(tmp_path: Path, text: str,
                                                               key: str) -> None:
    path = tmp_path / "inventory.yml"
    path.write_text(text)

    completed = invoke("provision", "--inventory", str(path))

    assert (completed.returncode, "Traceback" in completed.stderr) == (2, False)
    assert completed.stderr.startswith(f"error: Inventory error in {path}, at {key}")


def test_provision_unknown_host_exits_2_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        hosts:
          web1:
            address: 10.0.0.1
            roles: [ufw]
        """)

    completed = invoke("provision", "--inventory", str(path), "--host", "nosuch")

    assert completed.returncode == 2
    assert completed.stderr.strip() == f"error: --host nosuch: no such host in {path}; hosts: web1."


def test_provision_missing_inventory_exits_2_naming_the_file(tmp_path: Path) -> None:
    completed = invoke("provision", "--inventory", str(tmp_path / "missing.yml"))

    assert completed.returncode == 2
    assert f"Inventory error in {tmp_path / 'missing.yml'}: the file does not exist" in (
        completed.stderr)


def test_provision_bad_set_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        hosts:
          web1:
            address: 10.0.0.1
            roles: [ufw]
        """)

    completed = invoke("provision", "--inventory", str(path), "--set", "ufw_ssh_port")

    assert (completed.returncode, completed.stderr.strip()) == (
        2, "error: --set 'ufw_ssh_port' must look like name=value.")


# --- help -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TASKS.task_names))
def test_every_task_flag_has_help_text(name: str) -> None:
    missing = [argument.name for argument in TASKS[name].get_arguments() if not argument.help]

    assert missing == []


@pytest.mark.parametrize("name", sorted(TASKS.task_names))
def test_every_task_has_a_one_line_summary(name: str) -> None:
    doc = TASKS[name].__doc__ or ""

    assert doc.strip().splitlines()[0].endswith(".")


def test_help_of_provision_lists_every_flag_with_its_text() -> None:
    completed = invoke("--help", "provision")
    options = completed.stdout.split("Options:", 1)[1]
    flags = re.findall(r"^  (-\w(?: \w+)?, --[\w-]+(?:=\w+)?)( +)(\S.*)?$", options, re.M)

    assert completed.returncode == 0
    assert sorted(flag.split("--")[1].split("=")[0] for flag, _, _ in flags) == [
        "check", "diff", "group", "host", "html", "inventory", "parallel", "profile", "report",
        "roles", "serial", "set"]
    assert [flag for flag, _, text in flags if not text] == []


def test_minus_h_after_provision_shows_its_help() -> None:
    completed = invoke("provision", "-h")

    assert (completed.returncode, completed.stdout.startswith("Usage:")) == (0, True)


# --- short flags ------------------------------------------------------------------------------


def short_flags(name: str) -> dict[str, list[str]]:
    return {argument.name: [flag for flag in argument.names if len(flag) == 1]
            for argument in TASKS[name].get_arguments()}


@pytest.mark.parametrize("name", sorted(TASKS.task_names))
def test_no_task_gives_minus_h_to_a_flag(name: str) -> None:
    assert [flag for flag, shorts in short_flags(name).items() if "h" in shorts] == []


@pytest.mark.parametrize("name", sorted(TASKS.task_names))
def test_minus_h_after_any_task_shows_that_tasks_help(name: str) -> None:
    completed = invoke(name, "-h")

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith(f"Usage: inv[oke] [--core-opts] {name}")


def test_a_flag_has_the_same_short_form_in_every_task() -> None:
    forms: defaultdict[str, set[str]] = defaultdict(set)
    for name in TASKS.task_names:
        for flag, shorts in short_flags(name).items():
            forms[flag].add("".join(shorts))

    assert {flag: found for flag, found in forms.items() if len(found) != 1} == {}


@pytest.mark.parametrize("name", sorted(TASKS.task_names))
def test_every_flag_has_its_own_short_form_within_a_task(name: str) -> None:
    shorts = [short for found in short_flags(name).values() for short in found]

    assert len(shorts) == len(set(shorts)) == len(short_flags(name))


def test_readme_gives_the_short_form_of_every_flag_of_the_host_tasks() -> None:
    tasks_section = (PROJECT_ROOT / "README.md").read_text().split("## Tasks", 1)[1]
    tasks_section = tasks_section.split("\n## ", 1)[0]
    flags = {flag: shorts[0] for name in ("provision", "verify", "facts", "disconnect")
             for flag, shorts in short_flags(name).items()}

    assert [flag for flag, short in flags.items()
            if f"`-{short}`/`--{flag.replace('_', '-')}`" not in tasks_section] == []


# --- flags and paths checked before any host is contacted --------------------------------------

#: A host in TEST-NET-1: a run that got as far as contacting it would hang, then fail with 1.
UNREACHABLE = """\
    hosts:
      web1:
        address: 192.0.2.1
        groups: [web]
    groups:
      web:
        roles: [ufw]
    """


@pytest.mark.parametrize(("task", "flag", "value"),
                         [("provision", "--parallel", "x"), ("provision", "--serial", "1.5"),
                          ("sandbox.up", "--count", "two"), ("bench", "--reps", "")],
                         ids=["parallel", "serial", "count", "reps"])
def test_a_number_flag_that_is_no_whole_number_is_one_line_and_exit_2(task: str, flag: str,
                                                                       value: str) -> None:
    completed = invoke(task, flag, value)
    assert completed.returncode == 2
    assert completed.stderr.strip() == (f"error: {flag} {value!r}: must be a whole number, "
                                         f"like {flag} 2.")


@pytest.mark.parametrize("parallel", [0, -3], ids=["zero", "negative"])
def test_parallel_below_one_is_refused(parallel: int) -> None:
    with pytest.raises(ProvisionerError, match=rf"^--parallel {parallel}: must be at least 1"):
        cli.check_run_flags(parallel, "")


def test_a_negative_serial_batch_size_is_refused() -> None:
    with pytest.raises(ProvisionerError, match=r"^--serial -1: must be 0"):
        cli.check_run_flags(10, "", serial=-1)


def test_report_in_a_directory_that_does_not_exist_is_refused(tmp_path: Path) -> None:
    report = tmp_path / "nowhere" / "report.json"

    with pytest.raises(ProvisionerError) as caught:
        cli.check_run_flags(10, str(report))

    assert str(caught.value) == (
        f"--report {report}: the directory {report.parent} does not exist; create it (mkdir -p "
        f"{report.parent}) or write the report somewhere else.")


def test_report_path_that_is_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProvisionerError, match=r"this is a directory; give a file name"):
        cli.check_run_flags(10, str(tmp_path))


def test_report_in_an_existing_directory_is_accepted(tmp_path: Path) -> None:
    cli.check_run_flags(1, str(tmp_path / "report.json"))


def test_a_report_path_that_is_a_symbolic_link_or_a_fifo_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (tmp_path / "link.html").symlink_to(victim)
    os.mkfifo(tmp_path / "pipe.html")

    for name, what in (("link.html", "a symbolic link"), ("pipe.html", "not a regular file")):
        with pytest.raises(ProvisionerError, match=f"this is {what}"):
            cli.check_run_flags(10, "", html=str(tmp_path / name))
    assert victim.read_text() == "keep me"


def test_a_report_written_where_a_link_was_planted_replaces_the_link(tmp_path: Path) -> None:
    victim = tmp_path / "precious.txt"
    victim.write_text("keep me")
    (tmp_path / "report.json").symlink_to(victim)

    write_report(RunResult(hosts={}), tmp_path / "report.json")

    assert victim.read_text() == "keep me"
    assert not (tmp_path / "report.json").is_symlink()
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o600


def test_a_directory_no_file_can_be_made_in_is_refused_even_for_root(tmp_path: Path) -> None:
    with pytest.raises(ProvisionerError, match="you may not write there"):
        cli.check_run_flags(10, "/proc/report.json")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--parallel", "0"], "--parallel 0: must be at least 1"),
        (["--report", "{tmp}/nowhere/report.json"], "--report {tmp}/nowhere/report.json: the "
                                                    "directory {tmp}/nowhere does not exist"),
        (["--set", "ufw_ssh_prot=2222"], "--set ufw_ssh_prot: no role of the selected hosts"),
        (["--set", "ufw_ssh_port=ssh"], "--set ufw_ssh_port: should be a number"),
        (["--host", "web9"], "--host web9: no such host in {inventory}"),
    ],
    ids=["parallel-zero", "report-directory-missing", "set-undeclared", "set-wrong-type",
         "unknown-host"],
)
def test_provision_flag_mistakes_exit_2_with_one_line_before_contacting_anyone(
        tmp_path: Path, flags: list[str], message: str) -> None:
    path = write(tmp_path, UNREACHABLE)
    flags = [flag.format(tmp=tmp_path) for flag in flags]

    completed = invoke("provision", "--inventory", str(path), *flags,
                       env={"PROVISIONER_RUNTIME_DIR": str(tmp_path / "run")})

    assert (completed.returncode, completed.stdout) == (2, "")
    assert completed.stderr.startswith("error: " + message.format(tmp=tmp_path, inventory=path))
    assert len(completed.stderr.strip().splitlines()) == 1


def test_provision_with_a_directory_as_inventory_exits_2_saying_so(tmp_path: Path) -> None:
    completed = invoke("provision", "--inventory", str(tmp_path))

    assert completed.returncode == 2
    assert f"{tmp_path}: this is a directory, not an inventory file" in completed.stderr


def test_report_that_cannot_be_written_after_the_run_is_said_and_fails_the_command(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from provisioner.run.results import RunResult

    report = tmp_path / "removed-meanwhile" / "report.json"

    assert cli.save_report(RunResult({}), report) is False
    assert capsys.readouterr().err.startswith(
        "error: the run finished (see the summary above), but its report could not be written "
        f"to {report}: ")


# --- --set names and variable types, named where they were written -------------------------------


def project_inventory(tmp_path: Path, cli_vars: dict[str, Any] | None = None,
                      **layers: dict[str, Any]) -> cli.Inventory:
    """web1 in group web (role ufw) and db1 (role fail2ban), with the project's roles; layers
    gives vars to 'defaults', 'group' (web) or 'host' (web1)."""
    path = write(tmp_path, UNREACHABLE)
    data = {"defaults": {"vars": {"site": "example", **layers.get("defaults", {})}},
            "groups": {"web": {"roles": ["ufw"], "vars": layers.get("group", {})}},
            "hosts": {"web1": {"address": "192.0.2.1", "groups": ["web"],
                               "vars": layers.get("host", {})},
                      "db1": {"address": "192.0.2.2", "roles": ["fail2ban"]}}}
    import yaml
    path.write_text(yaml.safe_dump(data))
    return cli.load_inventory(path, cli.available_roles(), cli_vars)


def test_set_of_a_name_nothing_declares_is_refused_with_the_closest_declared_name(
        tmp_path: Path) -> None:
    inventory = project_inventory(tmp_path, {"ufw_ssh_prot": 2222})

    with pytest.raises(ProvisionerError) as caught:
        cli.select_jobs(inventory, "web1", "", RunOptions())

    assert str(caught.value) == (
        f"--set ufw_ssh_prot: no role of the selected hosts (ufw) has a variable 'ufw_ssh_prot', "
        f"and {inventory.path} does not set it. Did you mean 'ufw_ssh_port'? Each role's "
        "variables are listed in roles/<role>/defaults.yml.")


def test_set_of_another_hosts_role_variable_is_refused_for_this_host(tmp_path: Path) -> None:
    inventory = project_inventory(tmp_path, {"fail2ban_maxretry": 3})

    with pytest.raises(ProvisionerError, match=r"^--set fail2ban_maxretry: no role"):
        cli.select_jobs(inventory, "web1", "", RunOptions())


@pytest.mark.parametrize("name", ["ufw_safeguard_timeout", "site"],
                         ids=["role-default", "inventory-var"])
def test_set_of_a_declared_name_is_accepted(tmp_path: Path, name: str) -> None:
    inventory = project_inventory(tmp_path, {name: 300 if name == "ufw_safeguard_timeout"
                                             else "x"})

    (job,) = cli.select_jobs(inventory, "web1", "", RunOptions())

    assert job.variables[name] == inventory.cli_variables[name]


@pytest.mark.parametrize(
    ("layer", "key"),
    [("defaults", "defaults.vars.ufw_ssh_port"), ("group", "groups.web.vars.ufw_ssh_port"),
     ("host", "hosts.web1.vars.ufw_ssh_port")],
)
def test_variable_of_the_wrong_type_is_named_in_the_file_and_key_where_it_was_set(
        tmp_path: Path, layer: str, key: str) -> None:
    inventory = project_inventory(tmp_path, **{layer: {"ufw_ssh_port": "ssh"}})

    with pytest.raises(InventoryError) as caught:
        cli.select_jobs(inventory, "web1", "", RunOptions())

    assert (caught.value.path, caught.value.key) == (str(inventory.path), key)
    assert caught.value.problem == (
        f"should be a number like its default in {PROJECT_ROOT / 'roles/ufw/defaults.yml'} (22), "
        "got a string 'ssh'.")


def test_variable_of_the_wrong_type_given_with_set_names_the_flag(tmp_path: Path) -> None:
    inventory = project_inventory(tmp_path, {"ufw_ssh_limit": "yes please"})

    with pytest.raises(ProvisionerError) as caught:
        cli.select_jobs(inventory, "web1", "", RunOptions())

    assert not isinstance(caught.value, InventoryError)
    assert str(caught.value).startswith("--set ufw_ssh_limit: should be a boolean like its "
                                        "default in ")


def test_variable_set_to_nothing_is_named_where_it_was_set(tmp_path: Path) -> None:
    inventory = project_inventory(tmp_path, group={"ufw_ssh_port": None})

    with pytest.raises(InventoryError) as caught:
        cli.select_jobs(inventory, "web1", "", RunOptions())

    assert caught.value.key == "groups.web.vars.ufw_ssh_port"
    assert caught.value.problem.endswith("got nothing (an empty YAML value?).")


def test_group_without_members_is_refused_naming_the_group(tmp_path: Path) -> None:
    inventory = project_inventory(tmp_path)
    empty = type(inventory)(inventory.path, inventory.hosts, {**inventory.groups, "spare": ()})

    with pytest.raises(ProvisionerError, match=r"^--group spare: no host of .* is in this group"):
        cli.select_jobs(empty, "", "spare", RunOptions())


# --- disconnect -----------------------------------------------------------------------------------


def test_disconnect_works_without_the_secrets_environment_variables(tmp_path: Path) -> None:
    path = write(tmp_path, """\
        defaults:
          ssh: {sudo_password: {secret: env:PROVISIONER_TEST_NEVER_SET}}
        hosts:
          web1: {address: 192.0.2.1, roles: [ufw], vars: {token: {secret: file:nowhere}}}
        """)

    completed = invoke("disconnect", "--inventory", str(path), "--host", "web1",
                       env={"PROVISIONER_RUNTIME_DIR": str(tmp_path / "run")})

    assert (completed.returncode, completed.stdout, completed.stderr) == (
        0, "no kept logins open\n", "")


# --- the sandbox's messages -------------------------------------------------------------------


def test_sandbox_down_names_what_it_stopped_and_the_inventory_it_removed() -> None:
    message = sandbox_cli.sandbox_down_message((), ["sandbox1", "sandbox2"], [],
                                               DEFAULT_INVENTORY, True)

    assert message == f"stopped and deleted sandbox1, sandbox2\nremoved {DEFAULT_INVENTORY}"


def test_sandbox_down_of_some_machines_names_those_still_running() -> None:
    message = sandbox_cli.sandbox_down_message(("sandbox2",), ["sandbox2"], ["sandbox1"],
                                       DEFAULT_INVENTORY, False)

    assert message == ("stopped and deleted sandbox2\n"
                       f"still running: sandbox1 ({DEFAULT_INVENTORY} lists them)")


def test_sandbox_down_with_nothing_running_says_there_is_nothing_to_stop() -> None:
    assert sandbox_cli.sandbox_down_message((), [], [], DEFAULT_INVENTORY, False) == (
        "no sandbox machines are running; nothing to stop.")


def test_sandbox_down_of_a_machine_that_is_not_running_says_so() -> None:
    assert sandbox_cli.sandbox_down_message(("sandbox7",), [], ["sandbox1"], DEFAULT_INVENTORY,
                                    False) == ("no sandbox machine named sandbox7 is running "
                                               "(running: sandbox1); nothing stopped.")


def test_sandbox_list_with_nothing_running_says_how_to_start_one() -> None:
    assert sandbox_cli.sandbox_list_lines([]) == [
        "no sandbox machines are running (start one with: invoke sandbox.up)"]


def test_sandbox_list_aligns_name_address_suite_and_pid() -> None:
    lines = sandbox_cli.sandbox_list_lines([("sandbox1", "10.77.0.2", "bookworm", 812),
                                    ("sandbox10", "10.77.0.11", "trixie", 90210)])

    assert lines == ["name       address     suite     pid",
                     "sandbox1   10.77.0.2   bookworm  812",
                     "sandbox10  10.77.0.11  trixie    90210"]


@pytest.mark.parametrize(("host", "group"), [("", None), (None, " , "), (",", "")])
def test_a_host_or_group_flag_that_names_nothing_selects_nothing(
        host: str | None, group: str | None) -> None:
    with pytest.raises(ProvisionerError, match="was given but names nothing"):
        cli.selection(host, group)


def test_no_host_or_group_flag_selects_every_host() -> None:
    assert cli.selection(None, None) == ("", "")
    assert cli.selection("web1", None) == ("web1", "")


@pytest.mark.parametrize(("make", "problem"), [
    (lambda path: None, "does not exist"),
    (lambda path: path.mkdir(), "is a directory"),
    (lambda path: path.write_text("ssh-ed25519 AAAA"), "is the public half"),
])
def test_a_key_file_that_cannot_be_one_is_refused_before_contact(
        tmp_path: Path, make: Any, problem: str) -> None:
    key = tmp_path / ("id.pub" if problem == "is the public half" else "id")
    make(key)
    inventory = project_inventory(tmp_path)
    web1 = inventory.hosts["web1"]
    inventory.hosts["web1"] = replace(web1, ssh=replace(web1.ssh, identity_file=key))

    with pytest.raises(ProvisionerError, match=f"ssh.identity_file of host web1 .*{problem}"):
        cli.select_jobs(inventory, "web1", "", RunOptions())


@pytest.mark.parametrize("value", [{"secret": "hunter2", "note": "x"}, {"Secret": "hunter2"},
                                   {"secrets": "hunter2"}, [{"secret": "hunter2", "x": 1}]])
def test_a_misshapen_secret_reference_is_never_repeated_in_a_type_error(
        tmp_path: Path, value: Any) -> None:
    inventory = project_inventory(tmp_path, {"ufw_ssh_port": value})

    with pytest.raises(ProvisionerError) as caught:
        cli.select_jobs(inventory, "web1", "", RunOptions())

    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(("passphrase", "pem", "encrypted"), [
    ("", False, False), ("secret phrase", False, True),
    ("", True, False), ("secret phrase", True, True)])
def test_an_encrypted_key_is_told_apart_without_loading_it(
        tmp_path: Path, passphrase: str, pem: bool, encrypted: bool) -> None:
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa" if pem else "ed25519", "-N", passphrase,
                    *(["-m", "PEM"] if pem else []), "-f", str(key)], check=True)
    assert private_key_is_encrypted(key.read_text()) is encrypted


def test_an_encrypted_key_without_an_agent_is_refused_before_contact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    key = tmp_path / "id"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "phrase", "-f", str(key)],
                   check=True)
    inventory = project_inventory(tmp_path)
    web1 = inventory.hosts["web1"]
    inventory.hosts["web1"] = replace(web1, ssh=replace(web1.ssh, identity_file=key))

    with pytest.raises(ProvisionerError, match=r"is encrypted .* no SSH agent is running"):
        cli.select_jobs(inventory, "web1", "", RunOptions())


def test_a_file_that_is_no_key_is_refused_before_contact(tmp_path: Path) -> None:
    not_a_key = tmp_path / "hostname"
    not_a_key.write_text("web1\n")
    inventory = project_inventory(tmp_path)
    web1 = inventory.hosts["web1"]
    inventory.hosts["web1"] = replace(web1, ssh=replace(web1.ssh, identity_file=not_a_key))

    with pytest.raises(ProvisionerError, match="is not a private key file"):
        cli.select_jobs(inventory, "web1", "", RunOptions())
