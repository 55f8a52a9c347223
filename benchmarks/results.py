"""Results: the per-tool figures of each scenario, the machine description, and their renderings.

Ratios are always to the floor's median measured in the same run (the machine is shared and
noisy, so figures from different runs are not comparable).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks.measure import Sample, summarise

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def sample_record(sample: Sample, changed: int, failed: int,
                  round_trips: dict[str, int | None], ok: bool, problem: str,
                  extra: dict[str, Any]) -> dict[str, Any]:
    return {**{key: round(value, 4) if isinstance(value, float) else value
               for key, value in asdict(sample).items()},
            "changed": changed, "failed": failed, "round_trips": round_trips, "ok": ok,
            "problem": problem, **extra}


def tool_summary(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median/min/max wall, median CPU, round trips per host and noisy reps of one tool."""
    good = [record for record in records if record["ok"]] or list(records)
    wall = summarise([record["wall"] for record in good])
    trips = [value for record in good for value in record["round_trips"].values()
             if value is not None]
    return {
        "reps": len(records), "ok_reps": sum(record["ok"] for record in records),
        "wall_median": round(wall.median, 3), "wall_min": round(wall.minimum, 3),
        "wall_max": round(wall.maximum, 3),
        "controller_cpu_median": round(summarise([r["controller_cpu"] for r in good]).median, 3),
        "target_cpu_median": round(summarise([r["target_cpu"] for r in good]).median, 3),
        "round_trips_per_host": round(sum(trips) / len(trips), 1) if trips else None,
        "noisy_reps": sum(record["noisy"] for record in records),
        "steal_seconds": round(sum(record["steal"] for record in records), 3),
    }


def add_ratios(tools: dict[str, dict[str, Any]]) -> None:
    floor = tools.get("floor", {}).get("summary")
    for data in tools.values():
        summary = data["summary"]
        summary["ratio_to_floor"] = (round(summary["wall_median"] / floor["wall_median"], 2)
                                     if floor and floor["wall_median"] > 0 else None)


def _median(results: dict[str, Any], scenario: str, tool: str) -> float | None:
    data = results["scenarios"].get(scenario, {}).get("tools", {}).get(tool)
    return data["summary"]["wall_median"] if data else None


def _ratio(top: float | None, bottom: float | None) -> float | None:
    return round(top / bottom, 2) if top is not None and bottom else None


def _times(ratio: float | None) -> str:
    return f"{fmt(ratio)}x" if ratio is not None else fmt(ratio)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 7's targets, each with the figure this run measured and whether it is met (None
    when the run did not measure it)."""
    found: list[dict[str, Any]] = []

    def add(target: str, figure: float | None, limit: float, detail: str = "") -> None:
        met = None if figure is None else figure <= limit
        found.append({"target": target, "figure": figure, "limit": limit, "met": met,
                      "detail": detail})

    floor_1 = _median(results, "noop-1", "floor")
    new_login = _ratio(_median(results, "noop-1", "provisioner-newlogin"), floor_1)
    add("no-op W, 1 host: at most 1.5x the floor",
        _ratio(_median(results, "noop-1", "provisioner"), floor_1), 1.5,
        f"with a new login every run: {_times(new_login)}")
    five = _median(results, "noop-5", "provisioner")
    other_scenario = _ratio(five, _median(results, "noop-1", "provisioner"))
    add("no-op W, 5 hosts: at most 1.3x its own 1-host time (alternated in the same scenario)",
        _ratio(five, _median(results, "noop-5", "provisioner-1host")), 1.3,
        f"against the noop-1 scenario's median: {_times(other_scenario)}")
    for scenario in ("first-1", "first-5"):
        add(f"first converge ({scenario}): at most 1.1x the floor's apply script",
            _ratio(_median(results, scenario, "provisioner"), _median(results, scenario, "floor")),
            1.1)
    add("rolling deploy (deploy-1): at most 1.2x the floor's deploy script",
        _ratio(_median(results, "deploy-1", "provisioner"), _median(results, "deploy-1", "floor")),
        1.2)
    for name, scenario in results["scenarios"].items():
        ours = _median(results, name, "provisioner")
        peers = [_median(results, name, peer) for peer in ("pyinfra", "ansible-tuned")]
        if ours is not None and all(peer is not None for peer in peers):
            add(f"{name}: faster than pyinfra and tuned Ansible (ratio to the faster of them)",
                _ratio(ours, min(peer for peer in peers if peer is not None)), 1.0)
        trips = scenario.get("tools", {}).get("provisioner", {}).get("summary", {}).get(
            "round_trips_per_host")
        if scenario.get("roles_per_host") and trips is not None and scenario["mode"] == "apply":
            add(f"{name}: SSH round trips per host at most its roles "
                f"({scenario['roles_per_host']})", trips, scenario["roles_per_host"])
    return found


def target_lines(found: Sequence[dict[str, Any]]) -> list[str]:
    verdict = {True: "met", False: "NOT met", None: "not measured in this run"}
    return [f"- {item['target']}: {fmt(item['figure'])} ({verdict[item['met']]})"
            + (f"; {item['detail']}" if item["detail"] else "") for item in found]


def _command_output(argv: Sequence[str]) -> str:
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)
    except OSError:
        return "?"
    return (done.stdout + done.stderr).strip()


def describe_machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"model name\s*:\s*(.*)", cpuinfo)
    memory = re.search(r"MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text())
    release = re.search(r'PRETTY_NAME="([^"]*)"', Path("/etc/os-release").read_text())
    return {
        "cpu": model.group(1).strip() if model else platform.processor(),
        "cores": os.cpu_count(),
        "ram_gib": round(int(memory.group(1)) / 1024 / 1024, 1) if memory else None,
        "kernel": platform.release(),
        "os": release.group(1) if release else platform.platform(),
        "python": platform.python_version(),
        "openssh": _command_output(["ssh", "-V"]),
    }


def project_versions() -> dict[str, str]:
    from importlib.metadata import version

    versions = {"provisioner": version("provisioner")}
    for name in ("fabric", "paramiko", "invoke"):
        versions[name] = version(name)
    commit = _command_output(["git", "-C", str(RESULTS_DIR.parent.parent), "rev-parse",
                              "--short", "HEAD"])
    versions["provisioner commit"] = commit if re.fullmatch(r"[0-9a-f]+", commit) else "?"
    return versions


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


COLUMNS = ("scenario", "tool", "median s", "min s", "max s", "ctl CPU s", "target CPU s",
           "SSH sessions/host", "x floor", "ok reps", "noisy reps")


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, scenario in results["scenarios"].items():
        if scenario.get("skipped"):
            rows.append([name, "(skipped)", scenario["skipped"], *[""] * 8])
            continue
        for tool, data in scenario["tools"].items():
            summary = data["summary"]
            rows.append([name, tool, fmt(summary["wall_median"]), fmt(summary["wall_min"]),
                         fmt(summary["wall_max"]), fmt(summary["controller_cpu_median"]),
                         fmt(summary["target_cpu_median"]),
                         fmt(summary["round_trips_per_host"], 1),
                         fmt(summary.get("ratio_to_floor")),
                         f"{summary['ok_reps']}/{summary['reps']}", str(summary["noisy_reps"])])
    return rows


def terminal_table(results: dict[str, Any]) -> str:
    rows = [list(COLUMNS), *table_rows(results)]
    widths = [max(len(row[index]) for row in rows if len(row) > index)
              for index in range(len(COLUMNS))]
    lines = []
    for number, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[i]) if i < 2 else cell.rjust(widths[i])
                               for i, cell in enumerate(row)).rstrip())
        if number == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


#: What latest.md says of logins kept between reps and of how provisioner is installed.
HOW_TOOLS_CONNECT = (
    "Connections kept between runs live on from rep to rep on converged machines, as for a "
    "user who runs the tool again within minutes: `floor-kept` (the floor through an OpenSSH "
    "ControlPersist master), both Ansible configurations (ControlPersist is on by default), "
    "`provisioner` (its kept logins, on by default). `floor` and `provisioner-newlogin` "
    "(`ssh.control_persist: 0`) log in afresh every run; pyinfra always does. On fresh "
    "machines nothing is kept.",
    "",
    "provisioner runs as `python -m invoke provision` from a fresh install made for the run "
    "(a copy of the checkout, `pip install -e` into a venv of its own, no bytecode compiled "
    "beforehand), so its modules' bytecode is what its own runs wrote. `provisioner-first` "
    "is a user's first run after installing (the install's bytecode removed before each of "
    "its reps); the `provisioner` rep right after it is their second run.",
)


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    versions = ", ".join(f"{key} {value}" for key, value in results["versions"].items())
    lines = [
        f"# Benchmark results ({results['date']})",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['ram_gib']} GiB RAM, "
        f"kernel {machine['kernel']}, {machine['os']}, Python {machine['python']}, "
        f"{machine['openssh']}.",
        f"Versions: {versions}.",
        f"Reps: {results['reps']} alternated per scenario (first converge: "
        f"{results['first_converge_reps']}). Wall times in seconds; `x floor` is the ratio of "
        "medians to the floor's in this same run. CPU is the controller's (all processes a tool "
        "started, including the daemons it keeps between runs) and the target machines' (they "
        "share this machine's cores). SSH sessions per host: provisioner's own round-trip count; "
        "floor 1; pyinfra exec and sftp channels; Ansible ssh/sftp/scp invocations. A noisy rep "
        "had more than 5% CPU steal or other people's processes busy on this shared machine.",
        "",
        *HOW_TOOLS_CONNECT,
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table_rows(results)]
    if results.get("targets"):
        lines += ["", "Issue 7's targets, as this run measured them (ratios of medians):",
                  *target_lines(results["targets"])]
    notes = results.get("notes") or []
    if notes:
        lines += ["", "Notes:", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


def write_all(results: dict[str, Any], smoke: bool, chart_python: Path | None) -> list[Path]:
    """The dated JSON, and (full runs) latest.md and latest.png; returns the paths written."""
    RESULTS_DIR.mkdir(exist_ok=True)
    stem = ("smoke-" if smoke else "") + results["date"].replace(":", "").replace(" ", "T")
    written = [RESULTS_DIR / f"{stem}.json"]
    written[0].write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if smoke:
        return written
    (RESULTS_DIR / "latest.md").write_text(markdown(results), encoding="utf-8")
    written.append(RESULTS_DIR / "latest.md")
    if chart_python is not None:
        chart = RESULTS_DIR / "latest.png"
        done = subprocess.run([str(chart_python), str(Path(__file__).with_name("chart.py")),
                               str(written[0]), str(chart)], check=False)
        if done.returncode == 0:
            written.append(chart)
        else:
            print("warning: the chart could not be drawn", file=sys.stderr)
    return written
