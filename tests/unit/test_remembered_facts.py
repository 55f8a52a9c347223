"""Facts remembered from a host's last run: one round trip for a converged host whose roles read
facts, and never a decision taken from facts the host did not give in this run.

The runs go through the engine against the local shell (the facts script reads this machine).
"""

from __future__ import annotations

import stat
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from provisioner.commands import quote
from provisioner.content.roles import Role
from provisioner.errors import RoleError
from provisioner.facts import FACTS_SCRIPT, parse_facts
from provisioner.facts import remembered as facts_cache
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig
from provisioner.run import engine, session
from provisioner.run.engine import RunOptions
from provisioner.run.results import HostResult
from provisioner.run.session import HostJob
from provisioner.step import Plan, Probed, Step
from provisioner.transport.remote import Result, StderrLines
from tests.unit.fakes import DEBIAN12_FACTS, LocalShell, Quiet, host_config


def config(address: str = "127.0.0.1") -> HostConfig:
    return host_config("local", address, roles=("sized",))


def sized_role(record: Path, reads_facts: bool = True) -> Role:
    """One step that wants ``record`` to hold the host's CPU count (or 'any' without facts)."""
    def steps(host: Host) -> list[Step]:
        wanted = str(host.facts.cpus) if reads_facts else "any"

        def decide(probed: Probed) -> Plan:
            if probed.output.strip() == wanted:
                return Plan(f"holds {wanted}")
            return Plan(f"set to {wanted}", action=f"echo {wanted} > {quote(str(record))}")

        return [Step(f"record {wanted}", f"cat {quote(str(record))} 2>/dev/null", decide)]

    return Role("sized", Path("/nonexistent"), {}, {}, steps)


class CutShell(LocalShell):
    """The local shell, but the first answer ends where ``after`` first appears (a connection
    that dropped mid-output)."""

    def __init__(self, after: str) -> None:
        super().__init__()
        self.after = after

    def run_script(self, script: str, timeout: float | None = None,
                   stderr_lines: StderrLines | None = None) -> Result:
        result = super().run_script(script, timeout)
        if len(self.scripts) == 1:
            return Result(result.stdout.split(self.after)[0], result.stderr, 255)
        return result


def refusing_role(role: Role, cpus: int) -> Role:
    """The role, refusing (as a role does for an OpenSSH too old) hosts with ``cpus`` CPUs."""
    def steps(host: Host) -> list[Step]:
        if host.facts.cpus == cpus:
            raise RoleError(f"{cpus} CPUs are not supported")
        return list(role.steps(host))

    return replace(role, steps=steps)


def provision(role: Role, monkeypatch: pytest.MonkeyPatch, address: str = "127.0.0.1",
              check: bool = False, shell: LocalShell | None = None
              ) -> tuple[HostResult, LocalShell]:
    shell = shell or LocalShell()
    monkeypatch.setattr(session, "open_connection", lambda config: shell)
    monkeypatch.setattr(engine, "prepare_keepers", lambda configs, workers: None)
    job = HostJob(config(address), (role,), {})
    result = engine.run([job], RunOptions(check=check), Quiet()).hosts["local"]
    return result, shell


def run_facts_script() -> str:
    return subprocess.run(["sh", "-s"], input=FACTS_SCRIPT, capture_output=True, text=True,
                          check=True).stdout


def local_cpus() -> int:
    return parse_facts(run_facts_script()).cpus


def remembered_entry(cache: Path) -> Path:
    (entry,) = (cache / "facts").iterdir()
    return entry


def forge_remembered_cpus(cache: Path, cpus: int) -> None:
    """Make the remembered facts claim another CPU count, as after a resize of the host."""
    entry = remembered_entry(cache)
    lines = entry.read_text().splitlines(keepends=True)
    lines[lines.index("== cpus\n") + 1] = f"{cpus}\n"
    entry.write_text("".join(lines))


def test_first_run_asks_for_facts_before_rendering_and_remembers_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result, shell = provision(sized_role(tmp_path / "record"), monkeypatch)

    assert shell.scripts[0] == FACTS_SCRIPT
    assert result.round_trips == 3  # facts, probes, the write
    assert (tmp_path / "record").read_text() == f"{local_cpus()}\n"
    assert facts_cache.recall(config()) is not None


def test_converged_host_whose_roles_read_facts_costs_one_round_trip(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provision(sized_role(tmp_path / "record"), monkeypatch)

    result, shell = provision(sized_role(tmp_path / "record"), monkeypatch)

    assert [change.status for change in result.changes] == ["ok"]
    assert result.round_trips == 1
    assert "== cpus" in shell.scripts[0] and str(tmp_path / "record") in shell.scripts[0]


def changing_facts(role: Role) -> Role:
    """The role, its step's action marked as one that may change the host's facts (an apt
    source written, a package installed)."""
    return replace(role, steps=lambda host: [replace(step, changes_facts=True)
                                             for step in role.steps(host)])


def test_a_run_that_acts_on_a_step_changing_facts_reads_them_again_at_its_end(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache_directory: Path) -> None:
    role = changing_facts(sized_role(tmp_path / "record"))
    provision(sized_role(tmp_path / "other"), monkeypatch)
    forge_remembered_cpus(private_cache_directory, local_cpus() + 7)  # as the action changed

    result, shell = provision(role, monkeypatch)

    assert [change.status for change in result.changes] == ["changed"]
    assert shell.scripts[-1] == FACTS_SCRIPT
    assert facts_cache.recall(config()) == parse_facts(run_facts_script())
    converged, _ = provision(role, monkeypatch)
    assert (converged.round_trips, shell.scripts.count(FACTS_SCRIPT)) == (1, 1)


def test_a_check_run_or_an_ok_step_changing_facts_does_not_read_them_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    role = changing_facts(sized_role(tmp_path / "record"))

    _, first = provision(role, monkeypatch, check=True)
    provision(role, monkeypatch)
    converged, again = provision(role, monkeypatch)

    assert first.scripts.count(FACTS_SCRIPT) == 1 and again.scripts.count(FACTS_SCRIPT) == 0
    assert [change.status for change in converged.changes] == ["ok"]
    assert converged.round_trips == 1


def test_facts_that_changed_since_last_run_are_used_before_anything_is_decided(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache_directory: Path) -> None:
    record = tmp_path / "record"
    provision(sized_role(record), monkeypatch)
    forge_remembered_cpus(private_cache_directory, local_cpus() + 7)

    result, _ = provision(sized_role(record), monkeypatch)

    assert [(change.label, change.status) for change in result.changes] == [
        (f"record {local_cpus()}", "ok")]
    assert result.round_trips == 2  # facts with the stale steps' probes, then the real steps'
    assert record.read_text() == f"{local_cpus()}\n"
    assert facts_cache.recall(config()) == parse_facts(run_facts_script())


def test_check_mode_with_changed_facts_reports_from_the_real_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache_directory: Path) -> None:
    record = tmp_path / "record"
    provision(sized_role(record), monkeypatch)
    forge_remembered_cpus(private_cache_directory, local_cpus() + 7)
    record.write_text("drifted\n")

    result, shell = provision(sized_role(record), monkeypatch, check=True)

    assert [(change.label, change.status) for change in result.changes] == [
        (f"record {local_cpus()}", "changed")]
    assert record.read_text() == "drifted\n"
    assert all(f"> {quote(str(record))}" not in script for script in shell.scripts)


def test_a_role_that_fails_on_the_remembered_facts_is_rendered_again_from_the_real_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache_directory: Path) -> None:
    record = tmp_path / "record"
    provision(sized_role(record), monkeypatch)
    forge_remembered_cpus(private_cache_directory, 1024)

    result, _ = provision(refusing_role(sized_role(record), cpus=1024), monkeypatch)

    assert (result.error, [change.status for change in result.changes]) == (None, ["ok"])
    assert result.round_trips == 2  # facts, then the probes of steps rendered from them


def test_a_corrupt_entry_costs_the_facts_round_trip_and_nothing_else(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache_directory: Path) -> None:
    provision(sized_role(tmp_path / "record"), monkeypatch)
    remembered_entry(private_cache_directory).write_text("== cpus\nmany\n")

    result, shell = provision(sized_role(tmp_path / "record"), monkeypatch)

    assert shell.scripts[0] == FACTS_SCRIPT
    assert ([change.status for change in result.changes], result.round_trips) == (["ok"], 2)


def test_an_answer_cut_off_is_never_trusted_nor_remembered(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache_directory: Path) -> None:
    provision(sized_role(tmp_path / "record"), monkeypatch)
    forge_remembered_cpus(private_cache_directory, local_cpus() + 7)
    forged = remembered_entry(private_cache_directory).read_text()

    result, shell = provision(sized_role(tmp_path / "record"), monkeypatch,
                              shell=CutShell(after="== virt"))

    assert ([change.status for change in result.changes], result.round_trips) == (["ok"], 3)
    assert shell.scripts[1] == FACTS_SCRIPT  # gathered again, not taken from the cut answer
    assert remembered_entry(private_cache_directory).read_text() != forged


def test_roles_that_read_no_facts_never_send_the_facts_script(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provision(sized_role(tmp_path / "record"), monkeypatch)

    result, shell = provision(sized_role(tmp_path / "other", reads_facts=False), monkeypatch)

    assert result.round_trips == 2  # probes, the write
    assert all("== cpus" not in script for script in shell.scripts)


def test_facts_are_remembered_per_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provision(sized_role(tmp_path / "record"), monkeypatch)

    _, shell = provision(sized_role(tmp_path / "record"), monkeypatch, address="127.0.0.2")

    assert shell.scripts[0] == FACTS_SCRIPT


# --- the cache itself ---------------------------------------------------------------------------


def test_nothing_is_recalled_for_a_host_never_seen() -> None:
    assert facts_cache.recall(config()) is None


def test_remembered_facts_are_private(private_cache_directory: Path) -> None:
    facts_cache.remember(config(), "== cpus\n2\n== end\n")

    entry = remembered_entry(private_cache_directory)
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600
    assert stat.S_IMODE(entry.parent.stat().st_mode) == 0o700
    assert facts_cache.recall(config()) == parse_facts("== cpus\n2\n== end\n")


def test_facts_with_credentials_in_an_apt_source_are_never_stored(
        private_cache_directory: Path) -> None:
    facts_cache.remember(config(),
                         "== apt\ndeb https://ci:s3cret@apt.example.com/ x main\n== end\n")

    assert not (private_cache_directory / "facts").exists()


def test_the_cache_directory_itself_is_private(private_cache_directory: Path) -> None:
    facts_cache.remember(config(), "== cpus\n2\n== end\n")

    assert stat.S_IMODE(private_cache_directory.stat().st_mode) == 0o700


def test_facts_cut_short_are_never_stored(private_cache_directory: Path) -> None:
    facts_cache.remember(config(), "== os\nID=debian\n== cpus\n2\n")

    assert not (private_cache_directory / "facts").exists()


def test_a_corrupt_entry_is_not_trusted(private_cache_directory: Path) -> None:
    facts_cache.remember(config(), "== cpus\n2\n== end\n")
    remembered_entry(private_cache_directory).write_text("== cpus\nmany\n")

    assert facts_cache.recall(config()) is None


def test_an_unwritable_cache_only_costs_the_facts_round_trip(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, private_cache_directory: Path) -> None:
    private_cache_directory.parent.mkdir(parents=True, exist_ok=True)
    private_cache_directory.write_text("not a directory")

    provision(sized_role(tmp_path / "record"), monkeypatch)
    result, shell = provision(sized_role(tmp_path / "record"), monkeypatch)

    assert shell.scripts[0] == FACTS_SCRIPT
    assert [change.status for change in result.changes] == ["ok"]


def test_only_the_newest_hosts_are_kept(monkeypatch: pytest.MonkeyPatch,
                                        private_cache_directory: Path) -> None:
    monkeypatch.setattr(facts_cache, "KEEP_ENTRIES", 3)
    for number in range(5):
        facts_cache.remember(config(f"192.0.2.{number}"), "== cpus\n2\n== end\n")

    assert len(list((private_cache_directory / "facts").iterdir())) == 3


# --- the host handle ----------------------------------------------------------------------------


def test_assumed_facts_stand_when_the_host_confirms_them() -> None:
    host = Host(config(), {}, gather_facts=lambda: pytest.fail("gathered"))
    host.assume_facts(DEBIAN12_FACTS)

    assert host.facts.cpus == DEBIAN12_FACTS.cpus
    assert host.settle_facts(DEBIAN12_FACTS)
    assert host.facts_gathered


def test_assumed_facts_that_nothing_read_are_dropped_unchecked() -> None:
    host = Host(config(), {}, gather_facts=lambda: replace(DEBIAN12_FACTS, cpus=64))
    host.assume_facts(DEBIAN12_FACTS)

    assert host.settle_facts(None)
    assert host.facts.cpus == 64


def test_assumed_facts_that_were_read_and_differ_do_not_stand() -> None:
    host = Host(config(), {}, gather_facts=lambda: pytest.fail("gathered"))
    host.assume_facts(DEBIAN12_FACTS)
    assert host.facts.cpus == DEBIAN12_FACTS.cpus

    assert not host.settle_facts(replace(DEBIAN12_FACTS, cpus=64))
