"""Kernel parameters: the drop-in file, and running values set only where they differ."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from provisioner.ops.file_writes import DesiredFile, write_file_action
from provisioner.ops.sysctl import ensure_sysctl, plan_runtime, probe_runtime, render_sysctl_file
from provisioner.step import Probed
from tests.unit.fakes import make_host

SETTINGS = {
    "net.ipv4.ip_forward": 0,
    "net.ipv4.conf.all.rp_filter": "1",
    "net.ipv4.ip_local_port_range": "1024 65000",
}


def probed(*rows: tuple[str, str, str]) -> str:
    return "".join(f"{key}\t{status}\t{value}\n" for key, status, value in rows)


def test_render_sysctl_file_has_the_header_then_one_key_per_line() -> None:
    assert render_sysctl_file(SETTINGS, "Managed by provisioner") == (
        "# Managed by provisioner\n"
        "net.ipv4.ip_forward = 0\n"
        "net.ipv4.conf.all.rp_filter = 1\n"
        "net.ipv4.ip_local_port_range = 1024 65000\n")


@pytest.mark.parametrize(
    ("output", "reason", "action"),
    [
        (probed(("net.ipv4.ip_forward", "w", "0"), ("net.ipv4.conf.all.rp_filter", "w", "1"),
                ("net.ipv4.ip_local_port_range", "w", "1024 65000")),
         "running values match", None),
        (probed(("net.ipv4.ip_forward", "w", "1"), ("net.ipv4.conf.all.rp_filter", "w", "1")),
         "set 1 running value(s): net.ipv4.ip_forward=0",
         "printf '%s\\n' 0 > /proc/sys/net/ipv4/ip_forward"),
        (probed(("net.ipv4.ip_local_port_range", "w", "32768 60999")),
         "set 1 running value(s): net.ipv4.ip_local_port_range=1024 65000",
         "printf '%s\\n' '1024 65000' > /proc/sys/net/ipv4/ip_local_port_range"),
        (probed(("net.ipv4.ip_local_port_range", "w", "1024 65000 ")),
         "running values match", None),
        (probed(("net.ipv4.ip_forward", "r", "1")),
         "running values match (1 read-only here: net.ipv4.ip_forward)", None),
        (probed(("net.ipv4.ip_forward", "r", "1"), ("net.ipv4.conf.all.rp_filter", "w", "2")),
         "set 1 running value(s): net.ipv4.conf.all.rp_filter=1 "
         "(1 read-only here: net.ipv4.ip_forward)",
         "printf '%s\\n' 1 > /proc/sys/net/ipv4/conf/all/rp_filter"),
        (probed(("kernel.unrelated", "w", "5")), "running values match", None),
        ("", "running values match", None),
    ],
    ids=["converged", "writable-differs", "multi-field-differs", "multi-field-whitespace",
         "read-only-differs", "read-only-and-writable", "unasked-key-ignored", "no-output"],
)
def test_plan_runtime(output: str, reason: str, action: str | None) -> None:
    plan = plan_runtime(output, SETTINGS)

    assert (plan.reason, plan.action) == (reason, action)


def test_plan_runtime_compares_multi_field_values_with_whitespace_normalised() -> None:
    plan = plan_runtime(probed(("net.ipv4.ip_local_port_range", "w", "1024 65000")),
                        {"net.ipv4.ip_local_port_range": "1024\t  65000"})

    assert plan.action is None


def test_plan_runtime_does_not_call_an_absent_key_read_only() -> None:
    plan = plan_runtime(probed(("net.ipv4.tcp_no_such_knob", "-", "")),
                        {"net.ipv4.tcp_no_such_knob": 1})

    assert "read-only" not in plan.reason


def test_probe_runtime_reports_read_only_and_absent_keys_on_this_kernel() -> None:
    script = probe_runtime(["kernel.ostype", "no.such.key"])

    completed = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                               check=False)

    assert completed.stdout == "kernel.ostype\tr\tLinux\nno.such.key\t-\t\n"


def test_probe_runtime_keeps_a_multi_field_value_whole() -> None:
    script = probe_runtime(["net.ipv4.ip_local_port_range"])

    completed = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                               check=False)
    value = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().strip()

    assert completed.stdout.split("\t", 2)[2] == value + "\n"
    assert plan_runtime(completed.stdout, {"net.ipv4.ip_local_port_range": " ".join(
        value.split())}).action is None


def test_probe_runtime_output_of_this_kernel_plans_nothing_for_its_own_values() -> None:
    script = probe_runtime(["kernel.ostype"])
    completed = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30,
                               check=False)

    assert plan_runtime(completed.stdout, {"kernel.ostype": "Linux"}).action is None


def test_ensure_sysctl_is_a_drop_in_file_then_the_runtime_step() -> None:
    file_step, runtime_step = ensure_sysctl(make_host(), "/etc/sysctl.d/60-net.conf", SETTINGS)

    assert file_step.decide(Probed("absent\n")).action == write_file_action(DesiredFile(
        "/etc/sysctl.d/60-net.conf", render_sysctl_file(SETTINGS, "Managed by provisioner")
        .encode()))
    assert runtime_step.probe == probe_runtime(list(SETTINGS))
    assert runtime_step.decide(Probed(probed(("net.ipv4.ip_forward", "w", "1")))).changes
