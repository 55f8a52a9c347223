"""The benchmark runner's pure parts: parsing each tool's account, noise, figures, the workload.

No machine is contacted; the runner itself is exercised by ``invoke bench --smoke``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from benchmarks import floor, inventories, measure, parsing, results
from benchmarks.install import copy_checkout, forget_bytecode
from benchmarks.run import SCENARIOS, Runner, parse_arguments
from benchmarks.tools import (
    FIRST_RUN,
    KEPT_ONLY,
    ONE_HOST,
    TOOL_NAMES,
    Context,
    Outcome,
    Provisioner,
    make_tool,
)
from provisioner.content.roles import load_role
from provisioner.content.variables import merge_role_variables
from provisioner.sandbox import Machine

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
ROLE = BENCH / "roles" / "provbench"


def role_defaults() -> dict:
    return yaml.safe_load((ROLE / "defaults.yml").read_text())


# -- the workload is the same for every tool ---------------------------------------------------

def test_pyinfra_data_equals_the_role_defaults() -> None:
    spec = importlib.util.spec_from_file_location(
        "pyinfra_all", BENCH / "peers" / "pyinfra" / "group_data" / "all.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for key, value in role_defaults().items():
        if key != "provbench_ufw_safeguard_timeout":
            assert getattr(module, key) == value, key


def test_ansible_defaults_equal_the_role_defaults() -> None:
    ansible = yaml.safe_load(
        (BENCH / "peers" / "ansible" / "roles" / "provbench" / "defaults" / "main.yml").read_text())
    expected = {key: value for key, value in role_defaults().items()
                if key != "provbench_ufw_safeguard_timeout"}
    assert ansible == expected


@pytest.mark.parametrize("copy", ["peers/pyinfra/templates/file.conf.j2",
                                  "peers/ansible/roles/provbench/templates/file.conf.j2"])
def test_peers_render_the_same_template(copy: str) -> None:
    original = ROLE / "templates" / "etc" / "provbench" / "file.conf.j2"
    assert (BENCH / copy).read_text() == original.read_text()


def test_provbench_role_loads_and_validates_with_its_defaults() -> None:
    role = load_role(ROLE)
    merged = merge_role_variables([role], {}, "test")
    assert merged["provbench_file_count"] == 10
    assert "nginx:reload" in role.handlers


def test_provbench_role_refuses_an_unknown_firewall_policy() -> None:
    from provisioner.errors import RoleError

    with pytest.raises(RoleError, match="provbench_ufw_default_incoming"):
        merge_role_variables([load_role(ROLE)], {"provbench_ufw_default_incoming": "maybe"},
                             "test")


def test_floor_apply_script_is_valid_shell_doing_all_of_w() -> None:
    variables = {**role_defaults()}
    script = floor.apply_script(variables, "bench1", ROLE / "templates")
    assert subprocess.run(["sh", "-n"], input=script, text=True, check=False).returncode == 0
    for fragment in ("install nginx fail2ban ufw postgresql cron", "file9.conf",
                     "sysctl -q -p /etc/sysctl.d/60-provbench.conf", "ufw allow 443/tcp",
                     "ufw --force enable", "/etc/cron.d/provbench", "systemctl reload nginx"):
        assert fragment in script


# -- reading the tools' output -----------------------------------------------------------------

ANSIBLE_RECAP = """
PLAY RECAP *********************************************************************
bench1                     : ok=12   changed=0    unreachable=0    failed=0    skipped=0
bench2                     : ok=12   changed=3    unreachable=1    failed=1    skipped=0
"""


def test_ansible_recap_gives_changed_and_failed_per_host() -> None:
    counts = parsing.parse_ansible_recap(ANSIBLE_RECAP)
    assert counts["bench1"] == parsing.HostCounts(0, 0)
    assert counts["bench2"] == parsing.HostCounts(3, 2)


PYINFRA_RUN = """--> Starting operation: Render file0.conf
    [bench1] Success
    [bench2] No changes

--> Starting operation: ufw rules
    [bench1] No changes
    [bench2] Error: executed 1 commands
"""


def test_pyinfra_run_counts_success_as_changed_and_errors_as_failed() -> None:
    counts = parsing.parse_pyinfra_run(PYINFRA_RUN, ["bench1", "bench2"])
    assert counts == {"bench1": parsing.HostCounts(1, 0), "bench2": parsing.HostCounts(0, 1)}


PYINFRA_DRY = """--> Detected changes:
    Operation                                   Change              Conditional Change
    Install the workload's packages             -                   -
    Render file0.conf                           2 (bench1, bench2)  -
    Apply the sysctl drop-in                    -                   1 (bench1)
    Detected changes may not include every change pyinfra will execute.
--> Disconnecting from hosts...
"""


def test_pyinfra_dry_counts_the_change_column_not_conditional_changes() -> None:
    counts = parsing.parse_pyinfra_dry(PYINFRA_DRY, ["bench1", "bench2"])
    assert counts == {"bench1": parsing.HostCounts(1, 0), "bench2": parsing.HostCounts(1, 0)}


def test_pyinfra_dry_without_a_table_is_a_failure() -> None:
    assert parsing.parse_pyinfra_dry("--> Loading config...\n", ["bench1"])["bench1"].failed


def test_ssh_invocations_are_counted_per_address() -> None:
    log = ["-C -o ControlMaster=auto 10.77.0.11 /bin/sh -c 'echo ~admin'",
           "-b - -C [10.77.0.11]", "-C 10.77.0.12 /bin/sh -c true", "-C 10.77.0.111 x"]
    counts = parsing.count_sessions(log, {"bench1": "10.77.0.11", "bench2": "10.77.0.12"})
    assert counts == {"bench1": 2, "bench2": 1}


# -- noise and figures -------------------------------------------------------------------------

def test_proc_stat_busy_excludes_idle_iowait_and_steal() -> None:
    ticks = measure.CLOCK_TICKS
    times = measure.parse_proc_stat(f"cpu  {ticks} 0 {ticks} {5 * ticks} {ticks} 0 0 {ticks} 0 0\n")
    assert (times.busy, times.steal, times.total) == (2.0, 1.0, 9.0)


def test_a_rep_with_other_peoples_load_is_flagged_noisy() -> None:
    before = measure.CpuTimes(busy=0.0, steal=0.0, total=0.0)
    quiet = measure.classify(2.0, 0.5, 0.2, before, measure.CpuTimes(0.8, 0.0, 4.0))
    busy = measure.classify(2.0, 0.5, 0.2, before, measure.CpuTimes(2.0, 0.0, 4.0))
    stolen = measure.classify(2.0, 0.5, 0.2, before, measure.CpuTimes(0.7, 0.5, 4.0))
    assert not quiet.noisy and busy.noisy and stolen.noisy
    assert busy.foreign_cpu == pytest.approx(1.3)


def test_process_cpu_includes_reaped_children() -> None:
    ticks = measure.CLOCK_TICKS
    fields = ["S", *["0"] * 10, str(ticks), str(ticks), str(2 * ticks), "0", *["0"] * 30]
    assert measure.process_cpu_seconds(f"42 (sh) {' '.join(fields)}") == 4.0


def record(wall: float, ok: bool = True, trips: int | None = 1) -> dict:
    sample = measure.Sample(wall, 0.5, 0.1, 0.0, 0.0, False)
    return results.sample_record(sample, 0, 0, {"bench1": trips}, ok, "", {})


def test_summary_uses_successful_reps_and_ratio_is_to_the_floor_median() -> None:
    tools = {"floor": {"summary": results.tool_summary([record(0.4), record(0.5), record(0.6)])},
             "provisioner": {"summary": results.tool_summary(
                 [record(1.0), record(2.0), record(9.0, ok=False)])}}
    results.add_ratios(tools)
    assert tools["floor"]["summary"]["ratio_to_floor"] == 1.0
    assert tools["provisioner"]["summary"]["wall_median"] == 1.5
    assert tools["provisioner"]["summary"]["ratio_to_floor"] == 3.0
    assert tools["provisioner"]["summary"]["ok_reps"] == 2


def test_markdown_names_the_machine_and_every_tool() -> None:
    data = {"date": "2026-01-01 00:00", "reps": 1, "first_converge_reps": 1,
            "machine": {"cpu": "X", "cores": 2, "ram_gib": 1.0, "kernel": "k", "os": "Debian",
                        "python": "3.11", "openssh": "OpenSSH_9.2"},
            "versions": {"provisioner": "0.1.0"}, "notes": ["a note"],
            "scenarios": {"noop-1": {"skipped": None, "tools": {
                "provisioner": {"summary": {**results.tool_summary([record(1.0)]),
                                            "ratio_to_floor": None}}}},
                "stack-noop-1": {"skipped": "no hardening role", "tools": {}}}}
    text = results.markdown(data)
    assert "| noop-1 | provisioner | 1.00 |" in text
    assert "no hardening role" in text and "2 cores" in text and "a note" in text


# -- command line ------------------------------------------------------------------------------

def test_smoke_is_a_first_and_a_second_run_of_provisioner_on_the_one_host_no_op() -> None:
    arguments = parse_arguments(["--smoke"])
    assert (arguments.reps, arguments.scenarios, arguments.tools) == (
        1, "noop-1", "provisioner-first,provisioner")
    assert SCENARIOS["noop-1"].hosts == 1


def test_unknown_scenario_is_a_usage_error() -> None:
    with pytest.raises(SystemExit):
        parse_arguments(["--scenarios", "nope"])


def test_a_daemon_kept_between_runs_counts_as_controller_cpu_while_alive() -> None:
    before = measure.live_children_cpu_seconds()
    busy = subprocess.Popen([sys.executable, "-c",
                             "import time\nend = time.process_time() + 0.2\n"
                             "while time.process_time() < end: pass\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while measure.live_children_cpu_seconds() - before < 0.2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert measure.live_children_cpu_seconds() - before >= 0.2
    finally:
        busy.kill()
        busy.wait()


def test_provisioner_newlogin_runs_with_control_persist_zero(tmp_path: Path) -> None:
    source = tmp_path / "inventory.yml"
    source.write_text("defaults:\n  user: admin\nhosts:\n  bench1:\n    address: 10.77.0.11\n")

    written = inventories.without_kept_logins(source, tmp_path / "newlogin.yml")

    data = yaml.safe_load(written.read_text())
    assert data["defaults"]["ssh"]["control_persist"] == 0
    assert data["hosts"] == {"bench1": {"address": "10.77.0.11"}}


def test_tools_that_only_differ_in_kept_connections_skip_fresh_machines() -> None:
    assert not set(KEPT_ONLY) & set(SCENARIOS["first-1"].tools)
    assert set(KEPT_ONLY) <= set(SCENARIOS["noop-5"].tools) & set(SCENARIOS["stack-noop-1"].tools)


def test_the_one_host_reference_runs_only_beside_several_hosts_on_the_first_of_them(
        tmp_path: Path) -> None:
    assert all((ONE_HOST in scenario.tools) == (scenario.hosts > 1 and scenario.state != "fresh")
               for scenario in SCENARIOS.values())
    machines = tuple(Machine(f"bench{n}", f"10.77.0.1{n}", "bookworm", n, Path("/"))
                     for n in (1, 2))
    context = Context("apply", False, machines, tmp_path / "inventory.yml", tmp_path, None)

    argv = Provisioner(kept=True, one_host=True).command(context, tmp_path / "report.json")

    assert argv[-2:] == ["--host", "bench1"] and make_tool(ONE_HOST).name == ONE_HOST


def scenario_record(mode: str = "apply", roles: int | None = 1, **medians: float) -> dict:
    return {"mode": mode, "roles_per_host": roles, "tools": {
        tool: {"summary": {**results.tool_summary([record(wall)])}}
        for tool, wall in medians.items()}}


def test_targets_are_judged_from_the_medians_of_this_run() -> None:
    data = {"scenarios": {
        "noop-1": scenario_record(floor=0.25, provisioner=0.26, pyinfra=4.0,
                                  **{"ansible-tuned": 11.0, "provisioner-newlogin": 0.38}),
        "noop-5": scenario_record(provisioner=0.40, **{"provisioner-1host": 0.30}),
        "first-1": scenario_record(floor=25.0, provisioner=28.0)}}

    found = {item["target"].split(":")[0]: item for item in results.targets(data)}

    assert found["no-op W, 1 host"]["figure"] == 1.04 and found["no-op W, 1 host"]["met"]
    assert found["no-op W, 5 hosts"]["figure"] == 1.33 and found["no-op W, 5 hosts"]["met"] is False
    assert "1.54x" in found["no-op W, 5 hosts"]["detail"]  # against the noop-1 scenario
    assert found["first converge (first-1)"]["met"] is False
    assert found["first converge (first-5)"]["met"] is None
    assert found["noop-1"]["met"]  # faster than both peers
    assert "NOT met" in "\n".join(results.target_lines(list(found.values())))


# -- provisioner as a user installs it -----------------------------------------------------------

def test_the_first_run_after_installing_comes_right_before_the_second_in_one_host_no_ops() -> None:
    assert TOOL_NAMES.index(FIRST_RUN) + 1 == TOOL_NAMES.index("provisioner")
    assert [name for name, scenario in SCENARIOS.items() if FIRST_RUN in scenario.tools] == [
        "noop-1", "stack-noop-1"]
    assert make_tool(FIRST_RUN).name == FIRST_RUN


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


def test_an_install_copies_the_checkouts_files_but_no_bytecode_nor_ignored_files(
        tmp_path: Path) -> None:
    checkout, copy = tmp_path / "checkout", tmp_path / "copy"
    (checkout / "pkg" / "__pycache__").mkdir(parents=True)
    (checkout / ".gitignore").write_text("__pycache__/\n*.log\n")
    (checkout / "pkg" / "module.py").write_text("tracked = True\n")
    (checkout / "pkg" / "__pycache__" / "module.cpython-311.pyc").write_bytes(b"old")
    git(checkout, "init", "-q")
    git(checkout, "add", ".gitignore", "pkg/module.py")
    (checkout / "pkg" / "new.py").write_text("not yet committed = True\n")
    (checkout / "run.log").write_text("ignored\n")

    copy_checkout(checkout, copy)

    assert sorted(str(path.relative_to(copy)) for path in copy.rglob("*") if path.is_file()) == [
        ".gitignore", "pkg/module.py", "pkg/new.py"]


def test_forgetting_bytecode_takes_an_install_back_to_no_cached_module(tmp_path: Path) -> None:
    cache = tmp_path / "roles" / "web" / "__pycache__"
    cache.mkdir(parents=True)
    (cache / "role.cpython-311.pyc").write_bytes(b"")
    (tmp_path / "roles" / "web" / "role.py").write_text("")

    forget_bytecode(tmp_path)

    assert not cache.exists() and (tmp_path / "roles" / "web" / "role.py").exists()


@pytest.mark.parametrize(("tool", "written", "problem"), [
    (FIRST_RUN, 0, "cached no bytecode"),
    ("provisioner", 3, "compiled 3 modules again"),
    (FIRST_RUN, 40, ""),
    ("provisioner", 0, ""),
])
def test_a_first_run_must_cache_bytecode_and_the_second_must_not_compile(
        tmp_path: Path, tool: str, written: int, problem: str) -> None:
    runner = Runner(parse_arguments(["--smoke"]))
    machines = (Machine("bench1", "10.77.0.11", "bookworm", 1, Path("/")),)
    context = Context("apply", False, machines, tmp_path / "inventory.yml", tmp_path, None)
    outcome = Outcome(0, {"bench1": 0}, {"bench1": 0}, {"bench1": 1},
                      extra={"bytecode_written": written})

    ok, why = runner.judge(SCENARIOS["noop-1"], tool, outcome, context)

    assert ok == (not problem) and problem in why


def test_tasks_cache_the_bytecode_invoke_would_not_once_tasks_py_is_imported(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """invoke sets sys.dont_write_bytecode before importing tasks.py and leaves it set; a task
    that runs the project's code sets it back, so its modules are compiled once, not every run
    (the smoke proves the same end to end: its first run must write bytecode, its second none)."""
    spec = importlib.util.spec_from_file_location("tasks_for_bytecode",
                                                  BENCH.parent / "tasks.py")
    assert spec is not None and spec.loader is not None
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    assert tasks.user_errors(lambda: sys.dont_write_bytecode)() is False
