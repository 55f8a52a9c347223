"""The walk over a host's steps, run against a real local shell instead of SSH.

These tests pin down the engine's promises: a converged host costs one round trip, an action is
followed by fresh probes, check mode never acts, handlers run once and only when notified.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from provisioner.change import Change
from provisioner.commands import quote
from provisioner.content.roles import Role
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig, SshSettings
from provisioner.ops.files import ensure_file
from provisioner.run.walk import HostWalk, RoleSteps
from provisioner.secrets.values import Secret
from provisioner.step import Handler, Plan, Probed, ProbeUnreadable, Safeguard, Step
from provisioner.transport.remote import Result, StderrLines
from tests.unit.fakes import DEBIAN12_FACTS, LocalShell, make_host, role_of, walk_roles


def marker_step(path: Path, notify: tuple[str, ...] = ()) -> Step:
    """A step that wants ``path`` to contain 'yes'."""
    def decide(probed: Probed) -> Plan:
        if probed.output.strip() == "yes":
            return Plan("already yes")
        return Plan("set to yes", action=f"echo yes > {quote(str(path))}")

    return Step(f"marker {path.name}", f"cat {quote(str(path))}", decide, notify)


def walk(steps: list[Step], check: bool = False, handlers: tuple[Handler, ...] = ()
         ) -> tuple[list[Change], LocalShell]:
    return walk_roles([role_of(steps, handlers)], check=check)


def test_converged_host_costs_one_round_trip(tmp_path: Path) -> None:
    files = [tmp_path / f"f{i}" for i in range(5)]
    for path in files:
        path.write_text("yes\n")
    changes, shell = walk([marker_step(path) for path in files])
    assert [change.status for change in changes] == ["ok"] * 5
    assert shell.round_trips == 1


def test_action_is_followed_by_fresh_probes_of_later_steps(tmp_path: Path) -> None:
    target = tmp_path / "shared"
    changes, shell = walk([marker_step(target), marker_step(target)])
    assert [change.status for change in changes] == ["changed", "ok"]
    assert target.read_text() == "yes\n"
    assert shell.round_trips == 2


def test_check_mode_sends_no_action_and_reports_what_would_change(tmp_path: Path) -> None:
    target = tmp_path / "untouched"
    changes, shell = walk([marker_step(target)], check=True)
    assert changes[0].changed and changes[0].reason.startswith("would change")
    assert not target.exists()
    assert all("echo yes" not in script for script in shell.scripts)


def test_check_mode_step_depending_on_pending_change_says_so(tmp_path: Path) -> None:
    def needs_tool(probed: Probed) -> Plan:
        raise ProbeUnreadable("tool not installed")

    dependent = Step("configure tool", "true", needs_tool)
    changes, _ = walk([marker_step(tmp_path / "pkg"), dependent], check=True)
    assert changes[1].changed and not changes[1].failed
    assert "would change after marker pkg" in changes[1].reason


def test_check_mode_names_the_change_a_step_says_it_waits_for(tmp_path: Path) -> None:
    def needs_database(probed: Probed) -> Plan:
        raise ProbeUnreadable("would change after database app is created")

    dependent = Step("grants in app", "true", needs_database)
    changes, _ = walk([marker_step(tmp_path / "db"), marker_step(tmp_path / "other"),
                       dependent], check=True)
    assert changes[2].reason == "would change after database app is created"


def test_unreadable_state_without_pending_change_fails_the_step() -> None:
    def needs_tool(probed: Probed) -> Plan:
        raise ProbeUnreadable("tool not installed")

    changes, _ = walk([Step("configure tool", "true", needs_tool)])
    assert changes[0].failed and "tool not installed" in changes[0].reason


def test_handler_runs_once_after_the_role_when_notified_twice(tmp_path: Path) -> None:
    log = tmp_path / "handler.log"
    handler = Handler("thing:reload", f"echo ran >> {quote(str(log))}")
    steps = [marker_step(tmp_path / "a", ("thing:reload",)),
             marker_step(tmp_path / "b", ("thing:reload",))]
    changes, _ = walk(steps, handlers=(handler,))
    assert log.read_text() == "ran\n"
    assert changes[-1].label == "handler thing:reload" and changes[-1].changed


def test_handler_does_not_run_when_nothing_changed(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("yes\n")
    log = tmp_path / "handler.log"
    handler = Handler("thing:reload", f"echo ran >> {quote(str(log))}")
    changes, _ = walk([marker_step(tmp_path / "a", ("thing:reload",))], handlers=(handler,))
    assert not log.exists()
    assert [change.label for change in changes] == ["marker a"]


def test_check_mode_reports_notified_handler_without_running_it(tmp_path: Path) -> None:
    log = tmp_path / "handler.log"
    handler = Handler("thing:reload", f"echo ran >> {quote(str(log))}")
    changes, _ = walk([marker_step(tmp_path / "a", ("thing:reload",))], check=True,
                      handlers=(handler,))
    assert changes[-1].reason == "would run (notified by marker a)"
    assert not log.exists()


def test_failed_action_stops_the_host_with_the_output_tail(tmp_path: Path) -> None:
    def broken(probed: Probed) -> Plan:
        return Plan("needs work", action="echo 'disk full' >&2; exit 3")

    changes, _ = walk([Step("broken", "true", broken), marker_step(tmp_path / "never")])
    assert len(changes) == 1
    assert changes[0].failed and "disk full" in changes[0].reason and "exit 3" in changes[0].reason
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("count", [1, 10, 40])
def test_round_trips_do_not_grow_with_the_number_of_converged_steps(
        tmp_path: Path, count: int) -> None:
    path = tmp_path / "same"
    path.write_text("yes\n")
    _, shell = walk([marker_step(path) for _ in range(count)])
    assert shell.round_trips == 1


# --- batched writes: steps that change only their own path ------------------------------------


def write_step(path: Path, notify: tuple[str, ...] = ()) -> Step:
    """A marker step declaring that its action changes nothing but ``path``."""
    return replace(marker_step(path, notify), writes_only=str(path))


def walk_parts(parts: list[tuple[list[Step], tuple[Handler, ...]]]
               ) -> tuple[list[Change], LocalShell]:
    return walk_roles([role_of(steps, handlers, f"role{i}")
                       for i, (steps, handlers) in enumerate(parts)])


def test_changed_files_travel_in_one_round_trip(tmp_path: Path) -> None:
    files = [tmp_path / f"f{i}" for i in range(10)]

    changes, shell = walk([write_step(path) for path in files])

    assert [change.status for change in changes] == ["changed"] * 10
    assert all(path.read_text() == "yes\n" for path in files)
    assert shell.round_trips == 2


def test_queued_writes_and_unchanged_steps_are_reported_in_step_order(tmp_path: Path) -> None:
    (tmp_path / "b").write_text("yes\n")
    steps = [write_step(tmp_path / name) for name in ("a", "b", "c")]

    changes, _ = walk(steps)

    assert [(c.label, c.status) for c in changes] == [
        ("marker a", "changed"), ("marker b", "ok"), ("marker c", "changed")]


def test_a_step_that_may_read_a_queued_write_is_decided_after_it(tmp_path: Path) -> None:
    shared = tmp_path / "shared"

    changes, shell = walk([write_step(shared), marker_step(shared)])

    assert [change.status for change in changes] == ["changed", "ok"]
    assert shell.round_trips == 2


def test_the_same_path_twice_is_decided_after_the_first_write(tmp_path: Path) -> None:
    shared = tmp_path / "shared"

    changes, _ = walk([write_step(shared), write_step(shared)])

    assert [change.status for change in changes] == ["changed", "ok"]


def test_a_failed_write_in_a_batch_stops_the_writes_after_it(tmp_path: Path) -> None:
    def broken(probed: Probed) -> Plan:
        return Plan("needs work", action="echo 'read-only file system' >&2; exit 30")

    steps = [write_step(tmp_path / "first"),
             Step("broken", "true", broken, writes_only=str(tmp_path / "broken")),
             write_step(tmp_path / "never")]

    changes, _ = walk(steps)

    assert [change.status for change in changes] == ["changed", "failed"]
    assert "read-only file system" in changes[1].reason and "exit 30" in changes[1].reason
    assert (tmp_path / "first").exists() and not (tmp_path / "never").exists()


def test_queued_writes_are_sent_before_a_later_step_fails_to_decide(tmp_path: Path) -> None:
    def unreadable(probed: Probed) -> Plan:
        raise ProbeUnreadable("tool not installed")

    changes, _ = walk([write_step(tmp_path / "first"), Step("configure tool", "true", unreadable)])

    assert [change.status for change in changes] == ["changed", "failed"]
    assert (tmp_path / "first").read_text() == "yes\n"


def test_a_safeguarded_write_is_never_batched(tmp_path: Path) -> None:
    guarded = replace(write_step(tmp_path / "guarded"),
                      safeguard=Safeguard("test", undo="true", timeout=60))
    assert HostWalk._writes_only(guarded) is None


def test_check_mode_queues_no_write(tmp_path: Path) -> None:
    files = [tmp_path / f"f{i}" for i in range(3)]

    changes, shell = walk([write_step(path) for path in files], check=True)

    assert all(change.reason.startswith("would change") for change in changes)
    assert shell.round_trips == 1 and not any(path.exists() for path in files)


def test_only_the_last_round_trip_of_a_role_finish_probes_the_next_role(tmp_path: Path) -> None:
    log = quote(str(tmp_path / "handlers.log"))
    handlers = (Handler("one:reload", f"echo one >> {log}"),
                Handler("two:reload", f"echo two >> {log}"))
    first = [write_step(tmp_path / "a", ("one:reload", "two:reload"))]
    second = [marker_step(tmp_path / "b")]
    (tmp_path / "b").write_text("yes\n")

    changes, shell = walk_parts([(first, handlers), (second, ())])

    probe_of_b = f"cat {quote(str(tmp_path / 'b'))}"
    assert [probe_of_b in script for script in shell.scripts] == [True, False, False, True]
    assert [change.status for change in changes] == ["changed", "changed", "changed", "ok"]


def test_a_secret_in_a_template_reaches_the_host_and_only_its_mask_is_shown(
        tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / "app.conf.j2").write_text("password={{ app_password }}\n")
    target = tmp_path / "app.conf"
    target.write_text("password=old\n")
    settings = SshSettings(None, Path("/dev/null"), False, None, 5, 5, None)
    config = HostConfig("local", "127.0.0.1", 22, "root", (), ("test",), {}, settings)
    host = Host(config, {"app_password": Secret("hunter2", "env:APP_PASSWORD")},
                lambda: DEBIAN12_FACTS, show_diff=True)
    host = host.for_role(templates)
    step = ensure_file(host, str(target), host.render("app.conf.j2"), mode=0o600)
    role = Role("test", tmp_path, {}, {}, lambda host: [step])
    changes: list[Change] = []

    HostWalk(host, LocalShell(), [RoleSteps(role, [step])],  # type: ignore[arg-type]
             changes.append, lambda label: None).run()

    assert target.read_text() == "password=hunter2\n"
    assert changes[0].changed and changes[0].diff is not None
    assert "+password=***" in changes[0].diff and "hunter2" not in changes[0].diff


class ShellWithoutSystemd(LocalShell):
    """A local shell where systemd's tools succeed doing nothing (the controller has no
    systemd), so a safeguard can be armed and reverted here."""

    def __init__(self, tools: Path) -> None:
        super().__init__()
        tools.mkdir()
        for name in ("systemctl", "systemd-run"):
            (tools / name).write_text("#!/bin/sh\nexit 0\n")
            (tools / name).chmod(0o755)
        self.tools = tools

    def run_script(self, script: str, timeout: float | None = None,
                   stderr_lines: StderrLines | None = None) -> Result:
        return super().run_script(f"PATH={quote(str(self.tools))}:$PATH\n{script}", timeout,
                                  stderr_lines)


def test_a_role_failing_after_a_guarded_change_reverts_it_instead_of_proving_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("provisioner.run.safeguards.SAFEGUARD_ROOT", str(tmp_path / "safeguard"))
    undone = tmp_path / "undone"
    safeguard = Safeguard("test", undo=f"echo reverted > {quote(str(undone))}", timeout=120)
    guarded = replace(marker_step(tmp_path / "guarded"), safeguard=safeguard)
    failing = Step("fails", "true", lambda probed: Plan("must act", action="exit 3"))
    role = Role("test", Path("/nonexistent"), {}, {}, lambda host: [guarded, failing])
    changes: list[Change] = []

    shell = ShellWithoutSystemd(tmp_path / "tools")
    HostWalk(make_host(), shell, [RoleSteps(role, [guarded, failing])],  # type: ignore[arg-type]
             changes.append, lambda label: None).run()

    assert undone.read_text() == "reverted\n"
    assert changes[-1].label == "safeguard test" and changes[-1].failed
    assert "failed before the change was proven" in changes[-1].reason


def test_an_action_reports_its_progress_while_it_runs(tmp_path: Path) -> None:
    target = tmp_path / "slow"
    step = Step("slow step", f"cat {quote(str(target))} 2>/dev/null || true",
                lambda probed: Plan("done", action=f"provisioner_progress 'waited 10 s for "
                                    f"the lock'; echo yes > {quote(str(target))}"))
    role = Role("test", Path("/nonexistent"), {}, {}, lambda host: [step])
    heard: list[tuple[str, str]] = []
    changes: list[Change] = []

    HostWalk(make_host(), LocalShell(), [RoleSteps(role, [step])],  # type: ignore[arg-type]
             changes.append, lambda label: None,
             lambda label, text: heard.append((label, text))).run()

    assert heard == [("slow step", "waited 10 s for the lock")]
    assert changes[0].changed and target.read_text() == "yes\n"


def interrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Step, Path]:
    """What an interrupted run left: its change made, its arming in place, its revert ready."""
    root = tmp_path / "safeguard"
    monkeypatch.setattr("provisioner.run.safeguards.SAFEGUARD_ROOT", str(root))
    target = tmp_path / "guarded"
    target.write_text("yes\n")
    (root / "test").mkdir(parents=True)
    (root / "test" / "armed").write_text("0123456789abcdef\n")
    (root / "test" / "revert.sh").write_text(f"rm -f {quote(str(target))}\n"
                                             f"rm -f {quote(str(root / 'test' / 'armed'))}\n")
    return replace(marker_step(target), safeguard=Safeguard("test", "true", timeout=120)), target


def walk_guarded(step: Step, tmp_path: Path, check: bool) -> list[Change]:
    role = Role("test", Path("/nonexistent"), {}, {}, lambda host: [step])
    changes: list[Change] = []
    HostWalk(make_host(check=check), ShellWithoutSystemd(tmp_path / "tools"),
             [RoleSteps(role, [step])], changes.append,  # type: ignore[arg-type]
             lambda label: None).run()
    return changes


def test_an_arming_an_interrupted_run_left_is_reverted_before_anything_is_decided(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    step, target = interrupted_run(tmp_path, monkeypatch)
    monkeypatch.setattr("provisioner.run.login_proof.RETRY_AFTER", ())  # no host to prove it on

    changes = walk_guarded(step, tmp_path, check=False)

    assert changes[0].label == "safeguard test" and "left unproven" in changes[0].reason
    assert changes[1].label == "marker guarded" and changes[1].reason == "set to yes"
    assert target.read_text() == "yes\n"  # made again, from the state it started from


def test_check_mode_reports_an_unproven_arming_and_leaves_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    step, target = interrupted_run(tmp_path, monkeypatch)

    changes = walk_guarded(step, tmp_path, check=True)

    assert changes[0].reason.startswith("would revert arming 0123456789abcdef")
    assert target.exists() and (tmp_path / "safeguard" / "test" / "armed").exists()


def test_a_changed_secret_shows_neither_its_new_nor_its_old_value_in_the_diff(
        tmp_path: Path) -> None:
    target = tmp_path / "app.conf"
    target.write_text("user=app\npassword=old-value-9\n")
    settings = SshSettings(None, Path("/dev/null"), False, None, 5, 5, None)
    config = HostConfig("local", "127.0.0.1", 22, "root", (), ("test",), {}, settings)
    host = Host(config, {"pw": Secret("new-value-7")}, lambda: DEBIAN12_FACTS, show_diff=True)
    step = ensure_file(host, str(target), "user=app\npassword=new-value-7\n")
    role = Role("test", tmp_path, {}, {}, lambda host: [step])
    changes: list[Change] = []

    HostWalk(host, LocalShell(), [RoleSteps(role, [step])],  # type: ignore[arg-type]
             changes.append, lambda label: None).run()

    diff = changes[0].diff or ""
    assert "old-value-9" not in diff and "new-value-7" not in diff
    assert "-***" in diff and "+password=***" in diff and " user=app" in diff


def test_a_secret_a_role_formats_itself_reaches_the_host_and_its_label_shows_the_mask(
        tmp_path: Path) -> None:
    settings = SshSettings(None, Path("/dev/null"), False, None, 5, 5, None)
    config = HostConfig("local", "127.0.0.1", 22, "root", (), ("test",), {}, settings)
    host = Host(config, {"token": Secret("tok-4242")}, lambda: DEBIAN12_FACTS)
    target = tmp_path / "sources"
    step = ensure_file(host, str(target), f"URIs: http://{host.vars['token']}@mirror/\n",
                       label=f"source with {host.vars['token']}")
    role = Role("test", tmp_path, {}, {}, lambda host: [step])
    changes: list[Change] = []

    HostWalk(host, LocalShell(), [RoleSteps(role, [step])],  # type: ignore[arg-type]
             changes.append, lambda label: None).run()

    assert target.read_text() == "URIs: http://tok-4242@mirror/\n"
    assert changes[0].label == "source with ***"


def test_a_secret_a_step_adds_is_masked_in_what_its_action_printed() -> None:
    literal = Secret("'pa''ss'", "generated on the host")
    step = Step("role app", "true",
                lambda probed: Plan("create role", action="echo \"ERROR: near 'pa''ss'\" >&2; "
                                    "exit 1"), secrets=(literal,))
    changes, _ = walk([step])
    assert changes[0].failed
    assert "'pa''ss'" not in changes[0].reason and "near ***" in changes[0].reason


def test_a_long_action_output_is_cut_at_a_lines_start_never_mid_word() -> None:
    from provisioner.run.batch import last_lines

    output = "\n".join(f"line {number} shutting down" for number in range(200))

    shown = last_lines(output)

    assert shown.startswith("... line ") and shown.endswith("line 199 shutting down")
    assert len(shown) <= 804 and last_lines("short") == "short"
