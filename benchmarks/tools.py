"""The tools under test. Each prepares a run (untimed), executes it (timed), then judges it.

* floor: one OpenSSH session per host running a generated script (see floor.py), a new login
  each run; floor-kept: the same through an OpenSSH ControlPersist master kept between runs.
* pyinfra: benchmarks/peers/pyinfra/deploy.py, ``pyinfra INVENTORY deploy.py --sudo -y``.
* ansible / ansible-tuned: benchmarks/peers/ansible/site.yml with ansible.cfg / ansible-tuned.cfg
  (both use ControlPersist masters, 60 s by default, 300 s tuned).
* deploy-1: floor runs floor.deploy_script (a hand-written rolling deploy) in one session;
  provisioner runs ``python -m invoke deploy --version V --inventory INV`` through
  count_round_trips.py, which counts its round trips per host.
* provisioner: ``python -m invoke provision --inventory INV --report FILE``, as a user runs it
  (its kept logins on, the default), in a fresh install made for the benchmark (install.py: a
  copy of the checkout, ``pip install -e`` into a venv of its own, nothing precompiled);
  provisioner-newlogin: the same with ``ssh.control_persist: 0``, a new login each run;
  provisioner-first: the same as provisioner with the install's bytecode removed before each
  run, a user's first run after installing (the provisioner run after it is their second).

Connections a tool keeps between runs (ControlPersist masters, provisioner's keepers) live on
across the reps of a no-op or check scenario, as they do for a user running the tool again, and
are closed when the scenario ends (end_kept_connections); on fresh machines every run starts
without one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import floor, inventories, parsing
from benchmarks.install import Install, forget_bytecode
from provisioner.run.session import HostJob
from provisioner.sandbox import Machine

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
ROLES_DIR = BENCH_DIR / "roles"
PEERS_DIR = BENCH_DIR / "peers"
TOOL_NAMES = ("floor", "floor-kept", "pyinfra", "ansible", "ansible-tuned", "provisioner-first",
              "provisioner", "provisioner-newlogin", "provisioner-1host")
#: Tools that keep a connection between runs only, so they take no part on fresh machines.
KEPT_ONLY = ("floor-kept", "provisioner-newlogin")
#: provisioner on the first machine only, alternated with the others on several machines: its
#: own one-host time measured in the same minutes as its many-host time (the target compares
#: them, and this machine's speed drifts between scenarios).
ONE_HOST = "provisioner-1host"
#: provisioner's first run after a fresh install (no bytecode yet), alternated right before
#: provisioner, whose run is then the user's second.
FIRST_RUN = "provisioner-first"
TIMEOUT = 3600


@dataclass(frozen=True)
class Context:
    """What one run is about: the scenario's mode, its machines and inventories, a work dir."""

    mode: str                      # "apply", "check" or "deploy"
    fresh: bool                    # first converge on fresh machines
    machines: tuple[Machine, ...]
    provisioner_inventory: Path    # the project's inventory for these machines and roles
    work: Path
    peers_python: Path | None
    check_scripts: dict[str, floor.CheckScript] = field(default_factory=dict)
    install: Install | None = None  # where provisioner runs; None: this checkout, as it is
    version: str = ""              # the version a "deploy" run deploys


@dataclass
class Outcome:
    """A tool's account of a run, checked: per-host changed/failed and round trips."""

    exit_code: int
    changed: dict[str, int]
    failed: dict[str, int]
    round_trips: dict[str, int | None]
    problem: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def total_changed(self) -> int:
        return sum(self.changed.values())

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not any(self.failed.values()) and not self.problem


@dataclass
class PreparedRun:
    execute: Callable[[], Any]
    evaluate: Callable[[Any], Outcome]
    settle: Callable[[], None] | None = None


def wait_exactly(process: subprocess.Popen[Any], timeout: float = TIMEOUT) -> int:
    """Wait for a process in one blocking waitpid, so the clock stops the moment it exits.

    ``Popen.wait(timeout=...)`` (and ``subprocess.run(timeout=...)``) poll instead, sleeping up
    to 50 ms between looks: every timed run then read up to 50 ms long, in 50 ms steps, which on
    runs of 0.3 s distorted the ratios. A watchdog thread kills a process that overstays.
    """
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    try:
        return process.wait()
    finally:
        watchdog.cancel()


def _run_logged(argv: Sequence[str], log: Path, cwd: Path, env: dict[str, str]) -> int:
    with open(log, "w", encoding="utf-8") as output:
        process = subprocess.Popen(list(argv), cwd=cwd, env=env, stdout=output,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        return wait_exactly(process)


class Floor:
    def __init__(self, kept: bool) -> None:
        self.kept = kept
        self.name = "floor-kept" if kept else "floor"

    def prepare(self, context: Context) -> PreparedRun:
        jobs = {job.config.name: job for job in
                floor.load_jobs(context.provisioner_inventory, [PROJECT_ROOT / "roles", ROLES_DIR])}
        scripts = _floor_scripts(context, jobs)
        work = context.work / self.name
        control_dir = work / "cp" if self.kept else None
        (control_dir or work).mkdir(parents=True, exist_ok=True)
        for name, text in scripts.items():
            (work / f"{name}.sh").write_text(text, encoding="utf-8")

        def execute() -> dict[str, int]:
            """Every host's session at once; scripts and outputs are files, so none waits."""
            processes = {}
            for name in scripts:
                with open(work / f"{name}.sh", "rb") as stdin, \
                        open(work / f"{name}.out", "wb") as stdout, \
                        open(work / f"{name}.err", "wb") as stderr:
                    processes[name] = subprocess.Popen(
                        floor.ssh_command(jobs[name].config, control_dir), stdin=stdin,
                        stdout=stdout, stderr=stderr)
            return {name: wait_exactly(process) for name, process in processes.items()}

        def evaluate(codes: dict[str, int]) -> Outcome:
            changed, failed, problems = {}, {}, []
            for name, code in codes.items():
                if context.fresh or context.mode == "deploy":
                    changed[name], failed[name] = 0, int(code != 0)
                else:
                    output = (work / f"{name}.out").read_text(encoding="utf-8", errors="replace")
                    changed[name], failed[name] = floor.pending_changes(
                        context.check_scripts[name], output)
                if code != 0:
                    error = (work / f"{name}.err").read_text(errors="replace").strip()
                    problems.append(f"{name}: exit {code}: {error[-300:]}")
            return Outcome(max(codes.values()), changed, failed, dict.fromkeys(codes, 1),
                           "; ".join(problems))

        return PreparedRun(execute, evaluate)


def _floor_scripts(context: Context, jobs: dict[str, HostJob]) -> dict[str, str]:
    """Per host: the apply script on fresh machines, the deploy script for a deploy, else
    provisioner's probes as one script."""
    if context.mode == "deploy":
        return {name: floor.deploy_script(floor.app_target(job), context.version)
                for name, job in jobs.items()}
    if context.fresh:
        return {name: floor.apply_script(job.variables, name, job.roles[0].template_dir)
                for name, job in jobs.items()}
    return {name: script.batch.text for name, script in context.check_scripts.items()}


class Provisioner:
    def __init__(self, kept: bool, one_host: bool = False, first_run: bool = False) -> None:
        self.kept, self.one_host, self.first_run = kept, one_host, first_run
        self.name = (ONE_HOST if one_host else FIRST_RUN if first_run
                     else "provisioner" if kept else "provisioner-newlogin")

    def command(self, context: Context, report: Path) -> list[str]:
        """``invoke provision`` as a user types it, for this tool's variant."""
        inventory = context.provisioner_inventory if self.kept else \
            inventories.without_kept_logins(context.provisioner_inventory,
                                            context.work / "inventory-newlogin.yml")
        python = context.install.python if context.install else Path(sys.executable)
        if context.mode == "deploy":  # through the round-trip counter (count_round_trips.py)
            return [str(python), "-m", "benchmarks.count_round_trips", "deploy", "--version",
                    context.version, "--inventory", str(inventory)]
        argv = [str(python), "-m", "invoke", "provision", "--inventory", str(inventory),
                "--report", str(report)]
        if context.mode == "check":
            argv.append("--check")
        if self.one_host:
            argv += ["--host", context.machines[0].name]
        return argv

    def prepare(self, context: Context) -> PreparedRun:
        report = context.work / f"{self.name}-report.json"
        log = context.work / f"{self.name}.log"
        report.unlink(missing_ok=True)
        argv = self.command(context, report)
        root = context.install.root if context.install else PROJECT_ROOT
        roles = context.install.roles_dir if context.install else ROLES_DIR
        env = {**os.environ, "PROVISIONER_ROLES_PATH": str(roles), "NO_COLOR": "1"}
        if context.mode == "deploy":
            return self.prepare_deploy(context, argv, log, root, env)
        if self.first_run and context.install:
            forget_bytecode(root)
        before = bytecode_stamps(root)

        def execute() -> int:
            return _run_logged(argv, log, root, env)

        def evaluate(code: int) -> Outcome:
            return _report_outcome(code, report, log, before, bytecode_stamps(root))

        return PreparedRun(execute, evaluate)

    def prepare_deploy(self, context: Context, argv: list[str], log: Path, root: Path,
                       env: dict[str, str]) -> PreparedRun:
        """A deploy writes no report: its round trips come from count_round_trips' file and
        every host counts as failed when the deploy exits non-zero."""
        trips = context.work / f"{self.name}-round-trips.json"
        trips.unlink(missing_ok=True)
        env["PROVBENCH_ROUND_TRIPS"] = str(trips)
        names = [machine.name for machine in context.machines]

        def execute_deploy() -> int:
            return _run_logged(argv, log, root, env)

        def evaluate_deploy(code: int) -> Outcome:
            counts = json.loads(trips.read_text()) if trips.exists() else {}
            return Outcome(code, dict.fromkeys(names, 0), dict.fromkeys(names, int(code != 0)),
                           {name: counts.get(name) for name in names},
                           "" if code == 0 else f"exit {code}; see {log}")

        return PreparedRun(execute_deploy, evaluate_deploy)


def _report_outcome(code: int, report: Path, log: Path, before: dict[Path, int],
                    after: dict[Path, int]) -> Outcome:
    """An ``invoke provision`` run's outcome from its JSON report, with how many bytecode files
    it wrote (``before``/``after``: bytecode_stamps around the run)."""
    extra: dict[str, Any] = {
        "bytecode_written": sum(before.get(path) != stamp for path, stamp in after.items())}
    if not report.exists():
        return Outcome(code, {}, {}, {}, f"no report; see {log}", extra)
    hosts = json.loads(report.read_text())["hosts"]
    extra.update({"host_seconds": max(data["duration_seconds"] for data in hosts.values()),
                  "reused_logins": sum(data.get("connection") == "reused"
                                       for data in hosts.values())})
    return Outcome(
        code, {name: data["changed"] for name, data in hosts.items()},
        {name: data["failed"] for name, data in hosts.items()},
        {name: data["round_trips"] for name, data in hosts.items()},
        "" if code == 0 else f"exit {code}; see {log}", extra)


def bytecode_stamps(root: Path) -> dict[Path, int]:
    """Each cached bytecode file under root with its modification time, to tell which a run
    wrote."""
    return {path: path.stat().st_mtime_ns for path in root.rglob("__pycache__/*.pyc")}


class Pyinfra:
    name = "pyinfra"

    def prepare(self, context: Context) -> PreparedRun:
        assert context.peers_python is not None
        inventory = inventories.pyinfra_inventory(context.machines,
                                                  context.work / "pyinfra_inventory.py")
        counts_file = context.work / "pyinfra-sessions.json"
        counts_file.unlink(missing_ok=True)
        log = context.work / "pyinfra.log"
        argv = [str(context.peers_python), str(PEERS_DIR / "pyinfra" / "count_sessions.py"),
                str(inventory), "deploy.py", "--sudo"]
        argv.append("--dry" if context.mode == "check" else "-y")
        env = {**os.environ, "PROVBENCH_SESSION_COUNTS": str(counts_file), "NO_COLOR": "1"}
        names = [machine.name for machine in context.machines]

        def execute() -> int:
            return _run_logged(argv, log, PEERS_DIR / "pyinfra", env)

        def evaluate(code: int) -> Outcome:
            output = log.read_text(encoding="utf-8", errors="replace")
            counts = (parsing.parse_pyinfra_dry(output, names) if context.mode == "check"
                      else parsing.parse_pyinfra_run(output, names))
            sessions = json.loads(counts_file.read_text()) if counts_file.exists() else {}
            by_address = {machine.name: sessions.get(machine.address)
                          for machine in context.machines}
            return Outcome(code, {h: c.changed for h, c in counts.items()},
                           {h: c.failed for h, c in counts.items()}, by_address,
                           "" if code == 0 else f"exit {code}; see {log}")

        return PreparedRun(execute, evaluate)


class Ansible:
    def __init__(self, tuned: bool) -> None:
        self.tuned = tuned
        self.name = "ansible-tuned" if tuned else "ansible"

    def prepare(self, context: Context) -> PreparedRun:
        assert context.peers_python is not None
        work = context.work / self.name
        control_dir, session_log = _ansible_workspace(work, keep_masters=not context.fresh)
        wrappers = [inventories.counting_wrapper(work / program, f"/usr/bin/{program}",
                                                 session_log)
                    for program in ("ssh", "sftp", "scp")]
        inventory = inventories.ansible_inventory(context.machines, work / "inventory.yml",
                                                  *wrappers)
        log = work / "ansible.log"
        config = PEERS_DIR / "ansible" / ("ansible-tuned.cfg" if self.tuned else "ansible.cfg")
        argv = [str(context.peers_python.parent / "ansible-playbook"), "-i", str(inventory),
                "site.yml"]
        if context.mode == "check":
            argv.append("--check")
        env = {**os.environ, "ANSIBLE_CONFIG": str(config), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
               "PATH": f"{context.peers_python.parent}:{os.environ.get('PATH', '')}"}

        def execute() -> int:
            return _run_logged(argv, log, PEERS_DIR / "ansible", env)

        def evaluate(code: int) -> Outcome:
            return _ansible_outcome(code, log, session_log, context.machines)

        # On fresh machines a master must not outlive its run: the next run's machine is new.
        settle = (lambda: end_masters(control_dir)) if context.fresh else None
        return PreparedRun(execute, evaluate, settle)


def _ansible_workspace(work: Path, keep_masters: bool) -> tuple[Path, Path]:
    """The ControlPath directory (emptied unless the masters are to live on) and an empty
    session log."""
    control_dir = work / "cp"
    session_log = work / "ssh-invocations.log"
    for path in (work, control_dir):
        path.mkdir(parents=True, exist_ok=True)
    if not keep_masters:
        end_masters(control_dir)
    session_log.write_text("")
    return control_dir, session_log


def end_masters(control_dir: Path) -> None:
    """End the OpenSSH ControlPersist masters whose sockets are in control_dir."""
    for socket in control_dir.iterdir() if control_dir.is_dir() else []:
        subprocess.run(["/usr/bin/ssh", "-o", f"ControlPath={socket}", "-O", "exit",
                        "placeholder"], capture_output=True, check=False, timeout=30)
        socket.unlink(missing_ok=True)


def end_kept_connections(work: Path, machines: Sequence[Machine]) -> None:
    """Close what the tools kept open between runs on these machines (after a scenario)."""
    from provisioner.transport.kept_logins import close_keepers

    for tool in ("floor-kept", "ansible", "ansible-tuned"):
        end_masters(work / tool / "cp")
    close_keepers({machine.address for machine in machines})


def _ansible_outcome(code: int, log: Path, session_log: Path,
                     machines: Sequence[Machine]) -> Outcome:
    """Changed and failed counts from the PLAY RECAP, sessions from the wrappers' log."""
    recap = parsing.parse_ansible_recap(log.read_text(encoding="utf-8", errors="replace"))
    missing = [m.name for m in machines if m.name not in recap]
    sessions = parsing.count_sessions(session_log.read_text().splitlines(),
                                      {machine.name: machine.address for machine in machines})
    problem = "" if code == 0 else f"exit {code}; see {log}"
    if missing:
        problem += f" no recap for {', '.join(missing)}"
    return Outcome(code, {h: c.changed for h, c in recap.items()},
                   {h: c.failed for h, c in recap.items()}, dict(sessions), problem.strip())


def make_tool(name: str) -> Floor | Provisioner | Pyinfra | Ansible:
    if name in ("floor", "floor-kept"):
        return Floor(kept=name == "floor-kept")
    if name in ("provisioner", "provisioner-newlogin", ONE_HOST, FIRST_RUN):
        return Provisioner(kept=name != "provisioner-newlogin", one_host=name == ONE_HOST,
                           first_run=name == FIRST_RUN)
    if name == "pyinfra":
        return Pyinfra()
    if name in ("ansible", "ansible-tuned"):
        return Ansible(tuned=name == "ansible-tuned")
    raise ValueError(f"unknown tool {name!r}; known: {', '.join(TOOL_NAMES)}")
