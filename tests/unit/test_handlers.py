"""Handlers: decided notifications, precedence, readiness, and records that outlive a failed run.

The walks run against the local shell; the handler records go to a temporary directory
(conftest.private_handler_records).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.commands import quote
from provisioner.content.roles import check_handler_names, check_notifications
from provisioner.errors import RoleError
from provisioner.run import handlers
from provisioner.step import Handler, Plan, Probed, Refused, Step
from tests.unit.fakes import LocalShell, role_of, walk_roles


def marker_step(path: Path, notify: tuple[str, ...] = (),
                chosen: tuple[str, ...] | None = None) -> Step:
    """Wants ``path`` to hold 'yes'; its change notifies ``chosen`` (None: all it declares)."""
    def decide(probed: Probed) -> Plan:
        if probed.output.strip() == "yes":
            return Plan("already yes")
        return Plan("set to yes", action=f"echo yes > {quote(str(path))}", notify=chosen)

    return Step(f"marker {path.name}", f"cat {quote(str(path))} 2>/dev/null", decide, notify)


def logging_handler(name: str, log: Path, **options: object) -> Handler:
    return Handler(name, f"echo {quote(name)} >> {quote(str(log))}", **options)  # type: ignore[arg-type]


def failing_step() -> Step:
    return Step("fails", "true", lambda probed: Plan("breaks", action="exit 3"))


def ran(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


# --- decided notifications ------------------------------------------------------------------


def test_decide_chooses_which_declared_handler_a_change_notifies(tmp_path: Path) -> None:
    log = tmp_path / "log"
    step = marker_step(tmp_path / "conf", ("pg:restart", "pg:reload"), chosen=("pg:reload",))
    walk_roles([role_of([step], [logging_handler("pg:restart", log),
                                 logging_handler("pg:reload", log)])])
    assert ran(log) == ["pg:reload"]


def test_a_plan_notifying_a_handler_its_step_does_not_declare_fails_the_step(
        tmp_path: Path) -> None:
    log = tmp_path / "log"
    step = marker_step(tmp_path / "conf", ("pg:reload",), chosen=("pg:restart",))
    changes, _ = walk_roles([role_of([step], [logging_handler("pg:restart", log),
                                              logging_handler("pg:reload", log)])])
    assert changes[0].failed and "does not declare" in changes[0].reason
    assert ran(log) == [] and not (tmp_path / "conf").exists()


def test_a_step_notifying_a_handler_the_role_lacks_is_refused_before_anything_runs(
        tmp_path: Path) -> None:
    role = role_of([marker_step(tmp_path / "conf", ("nginx:reload",))],
                   [logging_handler("nginx:restart", tmp_path / "log")], name="web")
    with pytest.raises(RoleError, match="'nginx:reload', which the role does not define"):
        check_notifications(role, list(role.steps(None)))  # type: ignore[arg-type]


def test_a_handler_name_that_cannot_be_a_file_name_is_refused_when_the_role_loads() -> None:
    with pytest.raises(RoleError, match=r"handler name '\.\./x'"):
        check_handler_names("web", {"../x": Handler("../x", "true")})


def test_a_handler_superseding_an_unknown_handler_is_refused_when_the_role_loads() -> None:
    with pytest.raises(RoleError, match="supersedes 'pg:reloda'"):
        check_handler_names("db", {"pg:restart": Handler("pg:restart", "true",
                                                          supersedes=("pg:reloda",))})


# --- precedence -----------------------------------------------------------------------------


def test_a_restart_supersedes_the_reload_of_the_same_service(tmp_path: Path) -> None:
    log = tmp_path / "log"
    steps = [marker_step(tmp_path / "a", ("pg:reload",)),
             marker_step(tmp_path / "b", ("pg:restart",))]
    changes, _ = walk_roles([role_of(steps, [
        logging_handler("pg:restart", log, supersedes=("pg:reload",)),
        logging_handler("pg:reload", log)])])
    assert ran(log) == ["pg:restart"]
    skipped = next(c for c in changes if c.label == "handler pg:reload")
    assert not skipped.changed and "pg:restart runs instead" in skipped.reason


def test_supersession_follows_chains() -> None:
    chain = {"restart": Handler("restart", "true", supersedes=("reload",)),
             "reload": Handler("reload", "true", supersedes=("test",)),
             "test": Handler("test", "true")}
    chosen, superseded = handlers.choose(chain, {"test": ["a"], "restart": ["b"]})
    assert [n.handler.name for n in chosen] == ["restart"]
    assert superseded == {"test": "restart"}
    assert chosen[0].clears == ("restart", "test")


def test_handlers_run_in_the_order_the_role_defines_them() -> None:
    defined = {"first": Handler("first", "true"), "second": Handler("second", "true")}
    chosen, _ = handlers.choose(defined, {"second": ["a"], "first": ["b"]})
    assert [n.handler.name for n in chosen] == ["first", "second"]


# --- readiness and why ----------------------------------------------------------------------


def test_a_handler_reports_which_steps_notified_it(tmp_path: Path) -> None:
    steps = [marker_step(tmp_path / "a", ("svc:reload",)),
             marker_step(tmp_path / "b", ("svc:reload",))]
    changes, _ = walk_roles([role_of(steps, [logging_handler("svc:reload", tmp_path / "log")])])
    assert changes[-1].reason == "ran (notified by marker a, marker b)"


def test_a_handler_waits_until_its_service_is_ready(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    handler = Handler("svc:restart", f"(sleep 0.6; touch {quote(str(ready))}) &",
                      ready=f"test -e {quote(str(ready))}", ready_timeout=10)
    changes, _ = walk_roles([role_of([marker_step(tmp_path / "a", ("svc:restart",))],
                                     [handler])])
    assert changes[-1].status == "changed" and "is ready" in changes[-1].reason
    assert ready.exists()


def test_a_handler_whose_service_never_gets_ready_fails_after_its_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "READY_POLL_SECONDS", 0.1)
    handler = Handler("svc:restart", "true", ready="false", ready_timeout=1)
    changes, _ = walk_roles([role_of([marker_step(tmp_path / "a", ("svc:restart",))],
                                     [handler])])
    assert changes[-1].failed
    assert "svc:restart: not ready 1 s after it ran (checked with: false)" in changes[-1].reason


# --- records: handlers are never lost ---------------------------------------------------------


def test_a_run_that_fails_after_a_notifying_change_leaves_the_handler_recorded(
        tmp_path: Path, private_handler_records: Path) -> None:
    log = tmp_path / "log"
    role = role_of([marker_step(tmp_path / "conf", ("svc:reload",)), failing_step()],
                   [logging_handler("svc:reload", log)], name="svc")
    changes, _ = walk_roles([role])
    assert changes[1].failed and ran(log) == []
    record = private_handler_records / "svc" / "svc:reload"
    assert record.read_text() == "marker conf\n"


def test_the_next_run_runs_a_recorded_handler_though_nothing_changes_any_more(
        tmp_path: Path, private_handler_records: Path) -> None:
    log = tmp_path / "log"
    handler = logging_handler("svc:reload", log)
    walk_roles([role_of([marker_step(tmp_path / "conf", ("svc:reload",)), failing_step()],
                        [handler], name="svc")])

    changes, shell = walk_roles([role_of([marker_step(tmp_path / "conf", ("svc:reload",))],
                                         [handler], name="svc")])

    assert ran(log) == ["svc:reload"]
    assert [c.status for c in changes] == ["ok", "changed"]
    assert "an earlier run's change (marker conf)" in changes[-1].reason
    assert not (private_handler_records / "svc" / "svc:reload").exists()
    assert shell.round_trips == 2


def test_a_recorded_handler_runs_once_then_is_forgotten(tmp_path: Path) -> None:
    log = tmp_path / "log"
    handler = logging_handler("svc:reload", log)
    steps = [marker_step(tmp_path / "conf", ("svc:reload",))]
    walk_roles([role_of([*steps, failing_step()], [handler], name="svc")])
    walk_roles([role_of(steps, [handler], name="svc")])
    changes, shell = walk_roles([role_of(steps, [handler], name="svc")])
    assert ran(log) == ["svc:reload"]
    assert [c.status for c in changes] == ["ok"] and shell.round_trips == 1


def test_check_mode_says_a_recorded_handler_would_run_and_keeps_the_record(
        tmp_path: Path, private_handler_records: Path) -> None:
    log = tmp_path / "log"
    handler = logging_handler("svc:reload", log)
    steps = [marker_step(tmp_path / "conf", ("svc:reload",))]
    walk_roles([role_of([*steps, failing_step()], [handler], name="svc")])
    changes, _ = walk_roles([role_of(steps, [handler], name="svc")], check=True)
    assert changes[-1].reason.startswith("would run (notified by an earlier run's change")
    assert ran(log) == [] and (private_handler_records / "svc" / "svc:reload").exists()


def test_a_record_of_a_role_not_in_this_run_is_kept_and_named(
        tmp_path: Path, private_handler_records: Path) -> None:
    handler = logging_handler("svc:reload", tmp_path / "log")
    walk_roles([role_of([marker_step(tmp_path / "conf", ("svc:reload",)), failing_step()],
                        [handler], name="svc")])
    changes, _ = walk_roles([role_of([], name="other")])
    assert changes[0].label == "handler svc:reload of role svc"
    assert "runs when role svc runs" in changes[0].reason
    assert (private_handler_records / "svc" / "svc:reload").exists()


def test_a_superseded_handler_loses_its_record_with_the_one_that_ran(
        tmp_path: Path, private_handler_records: Path) -> None:
    log = tmp_path / "log"
    restart = logging_handler("pg:restart", log, supersedes=("pg:reload",))
    reload = logging_handler("pg:reload", log)
    first = [marker_step(tmp_path / "a", ("pg:reload",)), failing_step()]
    walk_roles([role_of(first, [restart, reload], name="pg")])
    walk_roles([role_of([marker_step(tmp_path / "b", ("pg:restart",))], [restart, reload],
                        name="pg")])
    assert ran(log) == ["pg:restart"]
    assert list((private_handler_records / "pg").iterdir()) == []


def test_pending_records_are_read_with_shell_builtins_only(private_handler_records: Path
                                                           ) -> None:
    (private_handler_records / "pg").mkdir(parents=True)
    (private_handler_records / "pg" / "pg:reload").write_text("config file\n")
    output = LocalShell().run_script(handlers.pending_probe()).stdout
    assert handlers.parse_pending(output) == {"pg": {"pg:reload": "config file"}}


# --- refusals ---------------------------------------------------------------------------------


def refusing_step() -> Step:
    def decide(probed: Probed) -> Plan:
        raise Refused("no main mirror in the apt sources; set hardening_apt_security_uri")

    return Step("security source", "true", decide)


def test_a_refused_step_stops_the_run_as_refused_not_as_a_failed_action(tmp_path: Path) -> None:
    changes, _ = walk_roles([role_of([refusing_step(), marker_step(tmp_path / "after")])])
    assert [c.status for c in changes] == ["refused"]
    assert changes[0].failed and "no main mirror" in changes[0].reason
    assert not (tmp_path / "after").exists()


def test_check_mode_reports_a_refusal_as_refused_not_would_change() -> None:
    changes, _ = walk_roles([role_of([refusing_step()])], check=True)
    assert changes[0].status == "refused" and not changes[0].changed


def test_an_all_or_nothing_change_whose_action_failed_leaves_no_record_of_its_own(
        tmp_path: Path, private_handler_records: Path) -> None:
    def broken(probed: Probed) -> Plan:
        return Plan("would set", action="echo 'check failed; nothing changed' >&2; exit 1",
                    all_or_nothing=True)

    role = role_of([Step("config set", "true", broken, ("svc:reload",))],
                   [logging_handler("svc:reload", tmp_path / "log")], name="svc")
    changes, _ = walk_roles([role])
    assert changes[0].failed
    assert not (private_handler_records / "svc" / "svc:reload").exists()


def test_an_action_that_changed_something_then_failed_keeps_its_handler_owed(
        tmp_path: Path, private_handler_records: Path) -> None:
    log, target = tmp_path / "log", tmp_path / "conf"

    def half(probed: Probed) -> Plan:
        if probed.output.strip() == "g2":
            return Plan("as wanted")
        return Plan("write g2", action=f"echo g2 > {quote(str(target))}; exit 1")

    role = role_of([Step("half", f"cat {quote(str(target))} 2>/dev/null", half,
                         ("svc:reload",))], [logging_handler("svc:reload", log)], name="svc")
    first, _ = walk_roles([role])
    second, _ = walk_roles([role])
    assert first[0].failed and ran(log) == ["svc:reload"]
    assert [c.status for c in second] == ["ok", "changed"]


def test_a_failed_action_keeps_the_record_an_earlier_run_left(
        tmp_path: Path, private_handler_records: Path) -> None:
    handler = logging_handler("svc:reload", tmp_path / "log")
    walk_roles([role_of([marker_step(tmp_path / "conf", ("svc:reload",)), failing_step()],
                        [handler], name="svc")])

    def broken(probed: Probed) -> Plan:
        return Plan("would set", action="exit 1", all_or_nothing=True)

    walk_roles([role_of([Step("config set", "true", broken, ("svc:reload",))], [handler],
                        name="svc")])
    assert (private_handler_records / "svc" / "svc:reload").read_text() == "marker conf\n"


def test_a_record_path_that_is_a_symbolic_link_is_refused_not_written_through(
        tmp_path: Path, private_handler_records: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (private_handler_records / "svc").mkdir(parents=True)
    (private_handler_records / "svc" / "svc:reload").symlink_to(victim)
    changes, _ = walk_roles([role_of([marker_step(tmp_path / "conf", ("svc:reload",))],
                                     [logging_handler("svc:reload", tmp_path / "log")],
                                     name="svc")])
    assert changes[0].failed and "not a plain file" in changes[0].reason
    assert victim.read_text() == "precious\n" and not (tmp_path / "conf").exists()


def test_a_symbolic_link_among_the_records_is_not_read_as_one(private_handler_records: Path
                                                              ) -> None:
    (private_handler_records / "pg").mkdir(parents=True)
    (private_handler_records / "pg" / "pg:reload").symlink_to("/etc/hostname")
    output = LocalShell().run_script(handlers.pending_probe()).stdout
    assert handlers.parse_pending(output) == {}


def test_a_record_of_a_handler_the_role_no_longer_has_is_named_and_removed(
        tmp_path: Path, private_handler_records: Path) -> None:
    walk_roles([role_of([marker_step(tmp_path / "conf", ("svc:reload",)), failing_step()],
                        [logging_handler("svc:reload", tmp_path / "log")], name="svc")])
    changes, _ = walk_roles([role_of([], [logging_handler("svc:restart", tmp_path / "log")],
                                     name="svc")])
    assert changes[0].label == "handler svc:reload of role svc"
    assert "no longer has a handler of that name: removed its record" in changes[0].reason
    assert not (private_handler_records / "svc" / "svc:reload").exists()


def test_check_mode_keeps_a_record_of_a_handler_the_role_no_longer_has(
        tmp_path: Path, private_handler_records: Path) -> None:
    walk_roles([role_of([marker_step(tmp_path / "conf", ("svc:reload",)), failing_step()],
                        [logging_handler("svc:reload", tmp_path / "log")], name="svc")])
    changes, _ = walk_roles([role_of([], name="svc")], check=True)
    assert "would remove its record" in changes[0].reason
    assert (private_handler_records / "svc" / "svc:reload").exists()


@pytest.mark.parametrize("timeout", [0, 3601, 1.5, "30", None, True],
                         ids=["zero", "over an hour", "fraction", "text", "none", "boolean"])
def test_a_ready_timeout_that_is_not_whole_seconds_in_range_is_refused_when_the_role_loads(
        timeout: object) -> None:
    handler = Handler("svc:restart", "true", ready="true", ready_timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(RoleError, match="ready_timeout"):
        check_handler_names("svc", {"svc:restart": handler})


def test_check_mode_says_no_handler_would_run_after_a_refused_step(tmp_path: Path) -> None:
    role = role_of([marker_step(tmp_path / "conf", ("svc:reload",)), refusing_step()],
                   [logging_handler("svc:reload", tmp_path / "log")])
    changes, _ = walk_roles([role], check=True)
    assert [c.status for c in changes] == ["changed", "refused"]


def test_a_notifier_label_holding_a_tab_is_read_back_whole(private_handler_records: Path
                                                           ) -> None:
    (private_handler_records / "app").mkdir(parents=True)
    (private_handler_records / "app" / "app:reload").write_text("file of\tapp\n")
    output = LocalShell().run_script(handlers.pending_probe()).stdout
    assert handlers.parse_pending(output) == {"app": {"app:reload": "file of\tapp"}}


def test_a_symbolic_link_on_the_way_to_the_records_is_refused(
        tmp_path: Path, private_handler_records: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    linked_root = tmp_path / "linked-records"
    linked_root.symlink_to(elsewhere)
    monkeypatch.setattr(handlers, "HANDLER_ROOT", str(linked_root))
    changes, _ = walk_roles([role_of([marker_step(tmp_path / "conf", ("svc:reload",))],
                                     [logging_handler("svc:reload", tmp_path / "log")],
                                     name="svc")])
    assert changes[0].failed and "a symbolic link on the way" in changes[0].reason
    assert list(elsewhere.iterdir()) == []
