"""The command line: --set parsing, inventory choice, exit codes and help of the invoke tasks."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from invoke import Collection

from provisioner.cli import DEFAULT_INVENTORY, inventory_path, parse_cli_vars
from provisioner.errors import ProvisionerError
from provisioner.roles import PROJECT_ROOT


def load_tasks() -> Collection:
    spec = importlib.util.spec_from_file_location("tasks_under_test", PROJECT_ROOT / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ns  # type: ignore[no-any-return]


TASKS = load_tasks()


def invoke(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=120, check=False)


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

    assert completed.stderr.strip() == (f"error: Inventory error in {path}, at hosts.web1.colour: "
                                        "unknown key 'colour'; see README.md 'Inventory' for the "
                                        "keys")


def test_provision_with_a_broken_inventory_shows_no_traceback(
        broken_inventory_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    completed = broken_inventory_run[1]

    assert "Traceback" not in completed.stdout + completed.stderr


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("hosts:\n  web1:\n    address: 999.1.1.1\n    roles: [ufw]\n", "hosts.web1.address"),
        ("hosts:\n  web1:\n    address: 10.0.0.1\n    roles: [nginx]\n", "hosts.web1.roles"),
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
    assert "there is no host 'nosuch' (known hosts: web1)" in completed.stderr
    assert "Traceback" not in completed.stderr


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
        "check", "diff", "group", "host", "inventory", "parallel", "profile", "report", "roles",
        "set"]
    assert [flag for flag, _, text in flags if not text] == []
