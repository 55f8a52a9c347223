"""UFW: rules validated and compared as the canonical commands ``ufw show added`` prints."""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from provisioner.content.roles import PROJECT_ROOT
from provisioner.errors import RoleError
from provisioner.inventory.yaml_loader import load_yaml
from provisioner.ops.backups import safeguard_save
from provisioner.ops.ufw import (
    RULES_PROBE,
    Rule,
    ensure_ufw_default,
    ensure_ufw_enabled,
    ensure_ufw_rules,
    parse_added_rules,
    plan_rules,
    plan_ufw_default,
    read_rules,
    rules_probe,
)
from provisioner.step import Probed, ProbeUnreadable, Safeguard
from tests.unit.fakes import make_host

FIXTURES = Path(__file__).parent / "fixtures"
ROLE_DIR = PROJECT_ROOT / "roles" / "ufw"
SHOW_ADDED = (FIXTURES / "ufw_show_added.txt").read_text()
RECORDED = [
    "ufw limit 22/tcp",
    "ufw allow 80/tcp",
    "ufw allow from 10.0.0.0/8 to any port 5432 proto tcp",
]


def ufw_role() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ufw_role_under_test", ROLE_DIR / "role.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def role_vars(**overrides: Any) -> dict[str, Any]:
    """The role's own defaults (so new variables need no test change) with overrides."""
    return {**load_yaml(ROLE_DIR / "defaults.yml"), **overrides}


# --- Rule -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"port": "22", "action": "permit"}, "ufw action 'permit'"),
        ({"port": "22", "proto": "icmp"}, "ufw proto 'icmp'"),
        ({"port": "22", "source": "10.0.0.300/8"}, "10.0.0.300/8"),
        ({"port": "22", "source": "office"}, "office"),
        ({"port": "0"}, "ufw port '0'"),
        ({"port": "65536"}, "ufw port '65536'"),
        ({"port": "ssh"}, "ufw port 'ssh'"),
        ({"port": "-1"}, "ufw port '-1'"),
        ({"port": "6000:x"}, "ufw port '6000:x'"),
        ({"port": ""}, "ufw port ''"),
    ],
    ids=["action", "proto", "source-octet", "source-name", "port-zero", "port-too-high",
         "port-name", "port-negative", "range-not-numeric", "port-empty"],
)
def test_invalid_rule_is_refused_with_the_bad_value(arguments: dict[str, str],
                                                    message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Rule(**arguments)


def test_rule_range_above_the_highest_port_is_refused() -> None:
    with pytest.raises(ValueError, match="6000:70000"):
        Rule("6000:70000")


@pytest.mark.parametrize(
    ("rule", "canonical"),
    [
        (Rule("22", action="limit"), "ufw limit 22/tcp"),
        (Rule("80"), "ufw allow 80/tcp"),
        (Rule("53", proto="udp"), "ufw allow 53/udp"),
        (Rule("53", proto="any"), "ufw allow 53"),
        (Rule("6000:6010", proto="tcp", action="deny"), "ufw deny 6000:6010/tcp"),
        (Rule("5432", source="10.0.0.0/8"),
         "ufw allow from 10.0.0.0/8 to any port 5432 proto tcp"),
        (Rule("161", proto="any", source="192.0.2.7", action="reject"),
         "ufw reject from 192.0.2.7 to any port 161"),
        (Rule("22", source="2001:db8::/32"),
         "ufw allow from 2001:db8::/32 to any port 22 proto tcp"),
    ],
    ids=["limit", "allow", "udp", "any-proto", "range", "from-network", "from-host-any-proto",
         "from-ipv6"],
)
def test_rule_canonical_form_is_what_ufw_show_added_prints(rule: Rule, canonical: str) -> None:
    assert rule.canonical() == canonical


@pytest.mark.parametrize(
    ("source", "stored"),
    [("198.51.100.7/32", "198.51.100.7"), ("10.0.0.1/8", "10.0.0.0/8")],
    ids=["host-netmask", "host-bits-set"],
)
def test_rule_with_a_source_ufw_normalises_is_kept_on_the_next_run(source: str,
                                                                    stored: str) -> None:
    shown = [f"ufw allow from {stored} to any port 22 proto tcp"]

    assert plan_rules(shown, [Rule("22", source=source)]).action is None


# --- parse_added_rules and plan_rules ---------------------------------------------------------


def test_parse_added_rules_reads_recorded_ufw_show_added_in_rule_order() -> None:
    assert parse_added_rules(SHOW_ADDED) == RECORDED


def test_parse_added_rules_of_an_empty_rule_set_is_empty() -> None:
    output = "Added user rules (see 'ufw status' for running firewall):\n(None)\n"

    assert parse_added_rules(output) == []


def test_plan_rules_changes_nothing_when_the_rules_match() -> None:
    desired = [Rule("22", action="limit"), Rule("80"), Rule("5432", source="10.0.0.0/8")]

    plan = plan_rules(RECORDED, desired)

    assert (plan.reason, plan.action) == ("3 rules as desired", None)


def test_plan_rules_removes_rules_the_inventory_no_longer_lists() -> None:
    plan = plan_rules(RECORDED, [Rule("22", action="limit"), Rule("80")])

    assert plan.reason == "remove allow from 10.0.0.0/8 to any port 5432 proto tcp"
    assert plan.action == "ufw delete allow from 10.0.0.0/8 to any port 5432 proto tcp"


def test_plan_rules_appends_new_rules_in_inventory_order() -> None:
    plan = plan_rules(["ufw limit 22/tcp"], [Rule("22", action="limit"), Rule("8443"), Rule("80")])

    assert plan.reason == "add allow 8443/tcp; add allow 80/tcp"
    assert plan.action == "ufw allow 8443/tcp && ufw allow 80/tcp"


def test_plan_rules_rebuilds_the_rules_after_an_inserted_one_in_order() -> None:
    admin = Rule("22", source="198.51.100.0/24")

    plan = plan_rules(["ufw limit 22/tcp", "ufw allow 80/tcp"],
                      [admin, Rule("22", action="limit"), Rule("80")])

    assert plan.reason == "add allow from 198.51.100.0/24 to any port 22 proto tcp"
    assert plan.action == ("ufw delete limit 22/tcp && ufw delete allow 80/tcp && "
                           "ufw allow from 198.51.100.0/24 to any port 22 proto tcp && "
                           "ufw limit 22/tcp && ufw allow 80/tcp")


def test_plan_rules_reorders_rules_that_are_all_present() -> None:
    plan = plan_rules(["ufw allow 80/tcp", "ufw limit 22/tcp"], [Rule("22", action="limit"),
                                                                 Rule("80")])

    assert plan.reason == "reorder rules"
    assert plan.action == ("ufw delete allow 80/tcp && ufw delete limit 22/tcp && "
                           "ufw limit 22/tcp && ufw allow 80/tcp")


def test_rule_changes_are_guarded_by_a_safeguard_that_saves_the_rule_files() -> None:
    guard = Safeguard("ufw-rules", undo="ufw reload")
    step = ensure_ufw_rules(make_host(), [Rule("22", action="limit")], safeguard=guard)

    plan = step.decide(Probed("ufw-installed\n" + SHOW_ADDED))

    assert step.safeguard == guard
    assert "/etc/ufw/user.rules" in (plan.action or "")


def test_plan_rules_deletes_a_commented_rule_with_its_comment_as_one_argument() -> None:
    plan = plan_rules(["ufw allow 8080/tcp comment 'temporary debug'"], [])

    assert shlex.split(plan.action or "") == [
        "ufw", "delete", "allow", "8080/tcp", "comment", "temporary debug"]


# --- the steps --------------------------------------------------------------------------------


def test_ensure_ufw_rules_decides_from_recorded_output() -> None:
    step = ensure_ufw_rules(make_host(), [Rule("22", action="limit"), Rule("80")])

    plan = step.decide(Probed("ufw-installed\n" + SHOW_ADDED))

    assert plan.action == "ufw delete allow from 10.0.0.0/8 to any port 5432 proto tcp"


@pytest.mark.parametrize(
    "probed",
    [Probed("", 127), Probed("ERROR: problem running ufw-init\n", 1), Probed("garbage\n", 0)],
    ids=["not-installed", "failed", "unexpected-output"],
)
def test_ensure_ufw_rules_cannot_read_rules_without_ufw(probed: Probed) -> None:
    step = ensure_ufw_rules(make_host(), [Rule("22")])

    with pytest.raises(ProbeUnreadable):
        step.decide(probed)


@pytest.mark.parametrize(
    ("output", "reason", "action"),
    [
        ("active\n", "active", None),
        ("inactive\n", "inactive -> active", "ufw --force enable"),
    ],
    ids=["active", "inactive"],
)
def test_ensure_ufw_enabled(output: str, reason: str, action: str | None) -> None:
    step = ensure_ufw_enabled(make_host(), safeguard=Safeguard("ufw", "ufw --force disable"))

    plan = step.decide(Probed(output))

    assert (plan.reason, plan.action) == (reason, action)


def test_ensure_ufw_rules_records_the_rule_files_for_its_safeguard_before_acting() -> None:
    safeguard = Safeguard("ufw-rules", "ufw reload")
    step = ensure_ufw_rules(make_host(), [Rule("22", action="limit")], safeguard=safeguard)

    plan = step.decide(Probed("ufw-installed\n" + SHOW_ADDED))

    assert step.safeguard == safeguard
    assert (plan.action or "").startswith(safeguard_save("ufw-rules", "/etc/ufw/user.rules"))


def test_ensure_ufw_enabled_carries_its_safeguard() -> None:
    safeguard = Safeguard("ufw", "ufw --force disable")

    assert ensure_ufw_enabled(make_host(), safeguard=safeguard).safeguard == safeguard


def test_ensure_ufw_enabled_without_ufw_cannot_read_the_status() -> None:
    step = ensure_ufw_enabled(make_host(), safeguard=Safeguard("ufw", "ufw --force disable"))

    with pytest.raises(ProbeUnreadable):
        step.decide(Probed("sh: 1: ufw: not found\n", 127))


# --- roles/ufw desired_rules ------------------------------------------------------------------


def test_desired_rules_default_is_rate_limited_ssh_only() -> None:
    assert ufw_role().desired_rules(role_vars()) == [Rule("22", "tcp", "any", "limit")]


def test_desired_rules_put_ssh_first_then_the_inventory_rules() -> None:
    rules = ufw_role().desired_rules(role_vars(ufw_rules=[
        {"port": 443}, {"port": 5432, "proto": "tcp", "from": "10.0.1.0/24"},
        {"port": 53, "proto": "udp", "action": "deny"}]))

    assert [rule.canonical() for rule in rules] == [
        "ufw limit 22/tcp",
        "ufw allow 443/tcp",
        "ufw allow from 10.0.1.0/24 to any port 5432 proto tcp",
        "ufw deny 53/udp",
    ]


def test_desired_rules_allow_ssh_only_from_the_listed_sources() -> None:
    rules = ufw_role().desired_rules(role_vars(ufw_ssh_port=2222, ufw_ssh_limit=False,
                                               ufw_ssh_sources=["198.51.100.0/24"]))

    assert rules == [Rule("2222", "tcp", "198.51.100.0/24", "allow")]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"port": 80, "proto": "icmp"}, r"ufw_rules\[0\] .*ufw proto 'icmp'"),
        ({"port": 80, "from": "office"}, r"ufw_rules\[0\] .*office"),
        ({"port": 70000}, r"ufw_rules\[0\] .*ufw port '70000'"),
        ({"proto": "tcp"}, r"ufw_rules\[0\] .*'port'"),
        ({"port": 80, "source": "10.0.0.0/8"}, r"ufw_rules\[0\] .*unknown key\(s\) source"),
        ("80/tcp", r"ufw_rules\[0\] \('80/tcp'\) is invalid"),
    ],
    ids=["bad-proto", "bad-source", "bad-port", "no-port", "unknown-key", "not-a-mapping"],
)
def test_desired_rules_bad_rule_is_a_role_error_naming_its_index(entry: Any,
                                                                 message: str) -> None:
    with pytest.raises(RoleError, match=message):
        ufw_role().desired_rules(role_vars(ufw_rules=[entry]))


@pytest.mark.parametrize("overrides", [{"ufw_ssh_sources": ["office-network"]},
                                       {"ufw_ssh_port": 0}], ids=["source", "port"])
def test_desired_rules_bad_ssh_setting_is_a_role_error(overrides: dict[str, Any]) -> None:
    with pytest.raises(RoleError):
        ufw_role().desired_rules(role_vars(**overrides))


TUPLES = """ufw-installed
tuple4 allow tcp 22 0.0.0.0/0 any 10.77.0.1 in
tuple4 limit tcp 22 0.0.0.0/0 any 0.0.0.0/0 in
tuple4 allow udp 53 0.0.0.0/0 any 10.0.0.0/8 in
tuple4 allow any 9000 0.0.0.0/0 any 0.0.0.0/0 in
tuple6 limit tcp 22 ::/0 any ::/0 in
tuple6 allow any 9000 ::/0 any ::/0 in
tuple6 allow tcp 443 ::/0 any 2001:db8::/32 in
"""


def test_rules_are_read_from_the_rule_files_in_ufw_order() -> None:
    assert read_rules(TUPLES) == [
        "ufw allow from 10.77.0.1 to any port 22 proto tcp",
        "ufw limit 22/tcp",
        "ufw allow from 10.0.0.0/8 to any port 53 proto udp",
        "ufw allow 9000",
        "ufw allow from 2001:db8::/32 to any port 443 proto tcp",
    ]


def test_rules_read_from_files_match_the_canonical_form_of_the_same_rules() -> None:
    desired = [Rule("22", source="10.77.0.1"), Rule("22", action="limit"),
               Rule("53", "udp", "10.0.0.0/8"), Rule("9000", "any"),
               Rule("443", source="2001:db8::/32")]

    assert plan_rules(read_rules(TUPLES), desired).action is None


def test_the_rules_probe_falls_back_to_ufw_for_rules_it_does_not_model(tmp_path: Path) -> None:
    assert "ufw show added" in RULES_PROBE
    assert read_rules("ufw-installed\n" + SHOW_ADDED)[0] == "ufw limit 22/tcp"


def run_rules_probe(directory: Path) -> str:
    """The rules probe against rule files in directory, with a stand-in ufw on the PATH."""
    (directory / "bin").mkdir()
    fake_ufw = directory / "bin" / "ufw"
    fake_ufw.write_text("#!/bin/sh\necho ufw-show-added-ran\n")
    fake_ufw.chmod(0o755)
    done = subprocess.run(["sh", "-c", rules_probe(str(directory))], capture_output=True,
                          text=True, timeout=30, check=False,
                          env={"PATH": f"{directory / 'bin'}:/usr/bin:/bin"})
    return done.stdout


def test_the_rules_probe_tags_each_rule_file_line_with_its_family(tmp_path: Path) -> None:
    (tmp_path / "user.rules").write_text(
        "*filter\n### tuple ### limit tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n-A ufw-user-input\n")
    (tmp_path / "user6.rules").write_text("### tuple ### limit tcp 22 ::/0 any ::/0 in\n")

    assert run_rules_probe(tmp_path) == ("ufw-installed\n"
                                         "tuple4 limit tcp 22 0.0.0.0/0 any 0.0.0.0/0 in\n"
                                         "tuple6 limit tcp 22 ::/0 any ::/0 in\n")


def test_the_rules_probe_reads_ipv4_rules_alone_when_ipv6_has_no_file(tmp_path: Path) -> None:
    (tmp_path / "user.rules").write_text("### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in\n")

    assert run_rules_probe(tmp_path) == ("ufw-installed\n"
                                         "tuple4 allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 in\n")


def test_the_rules_probe_asks_ufw_about_a_rule_on_an_interface(tmp_path: Path) -> None:
    (tmp_path / "user.rules").write_text("### tuple ### allow tcp 80 0.0.0.0/0 any 0.0.0.0/0 "
                                         "in_eth0\n")

    assert run_rules_probe(tmp_path).endswith("ufw-show-added-ran\n")


def test_rules_cannot_be_read_when_ufw_is_missing() -> None:
    with pytest.raises(ProbeUnreadable):
        read_rules("")


# --- default policies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recorded", "policy", "direction", "reason", "action"),
    [
        ("DROP", "deny", "incoming", "incoming deny", None),
        ("ACCEPT", "deny", "incoming", "incoming ACCEPT -> DROP",
         "ufw default deny incoming >/dev/null"),
        ("ACCEPT", "allow", "outgoing", "outgoing allow", None),
        ("DROP", "reject", "routed", "routed DROP -> REJECT",
         "ufw default reject routed >/dev/null"),
    ],
    ids=["same", "differs", "outgoing-same", "routed-differs"],
)
def test_plan_ufw_default(recorded: str, policy: str, direction: str, reason: str,
                          action: str | None) -> None:
    plan = plan_ufw_default(recorded, policy, direction)

    assert (plan.reason, plan.action) == (reason, action)


def test_ufw_default_without_ufw_installed_is_unreadable() -> None:
    with pytest.raises(ProbeUnreadable, match="DEFAULT_INPUT_POLICY"):
        plan_ufw_default(None, "deny", "incoming")


def test_ensure_ufw_default_reads_the_last_recorded_value() -> None:
    step = ensure_ufw_default(make_host(), "deny", "incoming")
    output = 'DEFAULT_INPUT_POLICY="ACCEPT"\nDEFAULT_INPUT_POLICY="DROP"\n'

    assert not step.decide(Probed(output)).changes
    assert "DEFAULT_INPUT_POLICY" in step.probe


@pytest.mark.parametrize(("policy", "direction"), [("maybe", "incoming"), ("deny", "sideways")])
def test_ensure_ufw_default_refuses_unknown_words(policy: str, direction: str) -> None:
    with pytest.raises(ValueError, match="ufw default"):
        ensure_ufw_default(make_host(), policy, direction)
