"""Owner, group and mode of existing paths: tightened, never loosened, absent paths skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.ops.access import Access, ensure_access, plan_access, probe_access
from provisioner.step import Probed
from tests.unit.fakes import LOCAL_GROUP, LOCAL_USER, make_host
from tests.unit.test_ops_path_state import WRITES, run_sh


@pytest.mark.parametrize(("stat", "access", "action"), [
    ("/etc/cron.d|root|root|755", Access("/etc/cron.d", "root", "root", 0o700, True),
     "chmod 0700 /etc/cron.d"),
    ("/home/admin|admin|admin|700", Access("/home/admin", None, None, 0o750, True), None),
    ("/home/admin|admin|admin|755", Access("/home/admin", None, None, 0o750, True),
     "chmod 0750 /home/admin"),
    ("/etc/shadow|root|root|640", Access("/etc/shadow", "root", "shadow", 0o640),
     "chown root:shadow /etc/shadow"),
    ("/etc/passwd|root|root|600", Access("/etc/passwd", "root", "root", 0o644),
     "chmod 0644 /etc/passwd"),
    ("", Access("/etc/crontab", "root", "root", 0o600, True), None),
], ids=["ceiling-removes-bits", "ceiling-keeps-a-stricter-mode", "ceiling-on-a-home",
        "exact-group", "exact-mode-loosens", "absent-skipped"])
def test_modes_are_tightened_never_loosened_and_absent_paths_skipped(
        stat: str, access: Access, action: str | None) -> None:
    assert plan_access(stat, [access]).action == action


def test_an_attribute_given_as_none_is_left_as_it_is() -> None:
    plan = plan_access("/srv/app|app|www-data|640", [Access("/srv/app", "root", None, 0o640)])

    assert (plan.reason, plan.action) == ("/srv/app app:www-data -> root:www-data",
                                          "chown root:www-data /srv/app")


def test_every_differing_path_is_fixed_in_one_action_and_named_in_the_reason() -> None:
    output = "/etc/shadow|root|root|644\n/etc/gshadow|root|shadow|640\n"
    wanted = [Access(path, "root", "shadow", 0o640) for path in ("/etc/shadow", "/etc/gshadow")]

    plan = plan_access(output, wanted)

    assert plan.reason == "/etc/shadow root:root -> root:shadow; /etc/shadow 0644 -> 0640"
    assert plan.action == "chown root:shadow /etc/shadow && chmod 0640 /etc/shadow"


def test_nothing_to_change_says_absent_paths_were_skipped() -> None:
    assert plan_access("", [Access("/etc/crontab", "root", "root", 0o600)]).reason == (
        "all as desired (absent paths skipped)")


def test_probe_access_reads_existing_paths_and_nothing_for_absent_ones(tmp_path: Path) -> None:
    present = tmp_path / "with space"
    present.write_text("")
    present.chmod(0o640)
    user, group = LOCAL_USER, LOCAL_GROUP

    done = run_sh(probe_access([str(present), str(tmp_path / "missing")]))

    assert (done.returncode, done.stdout) == (0, f"{present}|{user}|{group}|640\n")


def test_ensure_access_decides_from_its_one_probe() -> None:
    step = ensure_access(make_host(), [Access("/etc/crontab", "root", "root", 0o600, True)],
                         label="cron")

    assert not WRITES.search(step.probe)
    assert step.decide(Probed("/etc/crontab|root|root|644\n")).action == (
        "chmod 0600 /etc/crontab")
