"""Packages: dpkg-query output parsed, installs and purges planned, lists refreshed if stale."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from provisioner.ops.apt import (
    UPDATE_STAMP,
    PackageState,
    ensure_packages,
    parse_packages,
    plan_packages,
    probe_packages,
)
from provisioner.step import Probed
from tests.unit.hosts import make_host

FIXTURES = Path(__file__).parent / "fixtures"
APT = ("DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 "
       "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold")
WRITES = re.compile(r"(?<![0-9])>|\b(apt-get|dpkg -i|touch|mkdir|rm|mv)\b")


def state(*installed: str, age: int | None = 60) -> PackageState:
    return PackageState(frozenset(installed), age)


# --- parse_packages ---------------------------------------------------------------------------


def test_parse_packages_keeps_only_installed_packages_without_architecture() -> None:
    parsed = parse_packages((FIXTURES / "dpkg_query.txt").read_text())

    assert parsed == PackageState(frozenset({"openssh-server", "libc6", "nano"}), 7200)


def test_parse_packages_without_clock_line_has_unknown_age() -> None:
    assert parse_packages("nano\tii \n").lists_age is None


def test_parse_packages_counts_a_held_package_as_installed() -> None:
    assert parse_packages("openssh-server\thi \nnow 20\n").installed == {"openssh-server"}


def test_parse_packages_without_any_stamp_counts_the_lists_as_never_refreshed() -> None:
    assert parse_packages("now 1700000000\n").lists_age == 1700000000


# --- plan_packages ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "present", "absent", "reason", "action"),
    [
        (state("ufw", "nano"), ["ufw"], [], "all present", None),
        (state("nano"), [], ["telnet"], "all absent", None),
        (state("nano", age=99999), ["nano"], [], "all present", None),
        (state(age=60), ["ufw", "fail2ban"], [], "install ufw, fail2ban",
         f"{APT} install ufw fail2ban"),
        (state(age=7200), ["ufw"], [], "install ufw; package lists refreshed",
         f"{APT} update && mkdir -p /var/lib/provisioner && touch {UPDATE_STAMP} && "
         f"{APT} install ufw"),
        (state(age=None), ["ufw"], [], "install ufw; package lists refreshed",
         f"{APT} update && mkdir -p /var/lib/provisioner && touch {UPDATE_STAMP} && "
         f"{APT} install ufw"),
        (state("telnet", "rsh-client"), [], ["telnet", "rsh-client", "nis"],
         "purge telnet, rsh-client", f"{APT} purge telnet rsh-client"),
        (state("telnet", age=60), ["ufw"], ["telnet"], "purge telnet; install ufw",
         f"{APT} install ufw && {APT} purge telnet"),
    ],
    ids=["installed", "already-absent", "stale-lists-but-nothing-missing", "missing-fresh-lists",
         "missing-stale-lists", "missing-unknown-age", "purge-installed-only",
         "install-and-purge"],
)
def test_plan_packages(current: PackageState, present: list[str], absent: list[str],
                       reason: str, action: str | None) -> None:
    plan = plan_packages(current, present, absent, cache_max_age=3600)

    assert (plan.reason, plan.action) == (reason, action)


def test_plan_packages_refreshes_lists_exactly_at_the_age_limit_only_when_older() -> None:
    at_limit = plan_packages(state(age=3600), ["ufw"], [], cache_max_age=3600)
    older = plan_packages(state(age=3601), ["ufw"], [], cache_max_age=3600)

    assert (" update " in (at_limit.action or ""), " update " in (older.action or "")) == (
        False, True)


def test_plan_packages_quotes_package_names() -> None:
    plan = plan_packages(state(), ["weird name"], [], cache_max_age=3600)

    assert plan.action == f"{APT} install 'weird name'"


# --- the step ---------------------------------------------------------------------------------


def test_ensure_packages_probe_is_read_only() -> None:
    step = ensure_packages(make_host(), ["ufw"], ["telnet"])

    assert not WRITES.search(step.probe)


def test_ensure_packages_decides_from_the_recorded_probe() -> None:
    step = ensure_packages(make_host(), ["openssh-server", "ufw"], ["nano"])

    plan = step.decide(Probed((FIXTURES / "dpkg_query.txt").read_text()))

    assert plan.reason == "purge nano; install ufw; package lists refreshed"


def test_ensure_packages_label_names_the_packages() -> None:
    assert ensure_packages(make_host(), ["ufw"], ["telnet"]).label == "packages ufw telnet"


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs a Debian controller")
def test_probe_packages_runs_read_only_on_this_machine() -> None:
    completed = subprocess.run(["sh", "-c", probe_packages(["dpkg", "no-such-package-xyz"])],
                               capture_output=True, text=True, timeout=30, check=False)

    parsed = parse_packages(completed.stdout)

    assert parsed.installed == {"dpkg"}
    assert parsed.lists_age is not None
