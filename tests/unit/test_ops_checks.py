"""A tool's one-word answer decides: nothing to do, the action, or wait for an earlier step."""

from __future__ import annotations

import pytest

from provisioner.ops.checks import ensure_command_result, plan_command_result
from provisioner.step import Plan, Probed, ProbeUnreadable, Safeguard
from tests.unit.fakes import make_host


@pytest.mark.parametrize(("output", "plan"), [
    ("enabled\n", Plan("already enabled")),
    ("auth 0, account 0\n", Plan("auth 0, account 0 -> enabled", action="enable")),
    ("", Plan("nothing -> enabled", action="enable")),
    ("  enabled  \n\n", Plan("already enabled")),
], ids=["wanted", "other", "empty", "padded"])
def test_the_action_runs_unless_the_trimmed_answer_is_the_wanted_one(output: str,
                                                                     plan: Plan) -> None:
    assert plan_command_result(output, "enabled", "enable", "enabled") == plan


def test_an_unreadable_answer_waits_for_the_step_that_makes_it_readable() -> None:
    with pytest.raises(ProbeUnreadable, match=r"^the user does not exist yet$"):
        plan_command_result("unreadable: the user does not exist yet\n", "x", "y", "z")


def test_ensure_command_result_carries_its_probe_handlers_and_safeguard() -> None:
    guard = Safeguard("ssh", "true")
    step = ensure_command_result(make_host(), "masked", "echo masked", wanted="masked",
                                 action="systemctl mask x", reason="masked",
                                 notify=["ssh:reload"], safeguard=guard)

    assert (step.probe, step.notify, step.safeguard) == ("echo masked", ("ssh:reload",), guard)
    assert step.decide(Probed("enabled\n")).action == "systemctl mask x"
