"""Benchmark runner: python -m benchmarks.run --reps N [--scenarios a,b] [--tools x,y] [--smoke].

Runs the scenarios one after another on sandbox machines named bench1..benchN; within a scenario
the tools alternate rep by rep (floor, pyinfra, ansible, ansible-tuned, provisioner, floor, ...).
Every run is checked (a no-op must report 0 changed, a first converge must leave a host that
provisioner's own probes find converged); a run that fails its check is kept in the results,
marked, and makes the exit code 1. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import floor, inventories, machines, measure, results
from benchmarks.deploy_scenario import (
    ROLE_DIRS,
    DeployJudge,
    archive_dir,
    deploy_untimed,
    run_deploy_reps,
)
from benchmarks.install import Install, fresh_install
from benchmarks.peers_env import ensure_peers_venv, peer_versions
from benchmarks.tools import (
    FIRST_RUN,
    KEPT_ONLY,
    ONE_HOST,
    PROJECT_ROOT,
    ROLES_DIR,
    TOOL_NAMES,
    Context,
    Outcome,
    end_kept_connections,
    make_tool,
)
from provisioner.content.roles import available_roles
from provisioner.sandbox import Machine

WORK_DIR = Path(__file__).resolve().parent / ".work"
ALL_TOOLS = TOOL_NAMES
#: Every tool but provisioner's first run after installing, which the one-host no-ops add.
REPEATED_TOOLS = tuple(tool for tool in TOOL_NAMES if tool != FIRST_RUN)
ONE_HOST_TOOLS = tuple(tool for tool in REPEATED_TOOLS if tool != ONE_HOST)
FIRST_TOOLS = tuple(tool for tool in ONE_HOST_TOOLS if tool not in KEPT_ONLY)
STACK_TOOLS = ("floor", "floor-kept", "provisioner", "provisioner-newlogin")
DEPLOY_TOOLS = ("floor", "provisioner")


@dataclass(frozen=True)
class Scenario:
    name: str
    hosts: int
    state: str          # "workload": W converged; "fresh": new machines each run; "stack"
    mode: str           # "apply", "check" or "deploy"
    tools: tuple[str, ...]
    description: str


SCENARIOS = {scenario.name: scenario for scenario in (
    Scenario("noop-1", 1, "workload", "apply", (*ONE_HOST_TOOLS, FIRST_RUN),
             "W applied to 1 host that already has it: every tool must report 0 changed"),
    Scenario("noop-5", 5, "workload", "apply", REPEATED_TOOLS, "the same on 5 hosts at once"),
    Scenario("check-1", 1, "workload", "check", ONE_HOST_TOOLS,
             "check (dry-run) mode on 1 converged host: 0 would-change"),
    Scenario("first-1", 1, "fresh", "apply", FIRST_TOOLS,
             "W on 1 fresh machine (package cache pre-seeded, lists 2 h old)"),
    Scenario("first-5", 5, "fresh", "apply", FIRST_TOOLS, "W on 5 fresh machines at once"),
    Scenario("stack-noop-1", 1, "stack", "apply", (*STACK_TOOLS, FIRST_RUN),
             "the project's roles (hardening, ufw, fail2ban, postgres, pgbouncer, backups, "
             "docker, app, nginx, certbot) on 1 converged host, the app deployed"),
    Scenario("stack-noop-5", 5, "stack", "apply", (*STACK_TOOLS, ONE_HOST),
             "the same on 5 hosts"),
    Scenario("deploy-1", 1, "stack", "deploy", DEPLOY_TOOLS,
             "a rolling deploy of the app's two instances on 1 converged stack host, "
             "v1 -> v2 and v2 -> v1 in turn"),
)}
SMOKE_SCENARIO = "noop-1"
#: The smoke's runs: a first run after the install and the second run, which must read the
#: bytecode the first one wrote.
SMOKE_TOOLS = f"{FIRST_RUN},provisioner"


def say(line: str) -> None:
    print(line, flush=True)


def split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def parse_arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5, help="alternated reps per scenario")
    parser.add_argument("--scenarios", help=f"comma-separated, from {', '.join(SCENARIOS)}")
    parser.add_argument("--tools", help=f"comma-separated, from {', '.join(ALL_TOOLS)}")
    parser.add_argument("--smoke", action="store_true",
                        help="one rep, provisioner only, 1 host, no-op scenario (CI)")
    arguments = parser.parse_args(argv)
    if arguments.smoke:
        arguments.reps, arguments.scenarios, arguments.tools = 1, SMOKE_SCENARIO, SMOKE_TOOLS
    for name in split(arguments.scenarios):
        if name not in SCENARIOS:
            parser.error(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    for name in split(arguments.tools):
        if name not in ALL_TOOLS:
            parser.error(f"unknown tool {name!r}; known: {', '.join(ALL_TOOLS)}")
    if arguments.reps < 1:
        parser.error("--reps must be at least 1")
    return arguments


class Runner:
    def __init__(self, arguments: argparse.Namespace) -> None:
        self.smoke = arguments.smoke
        self.reps = arguments.reps
        self.first_reps = min(self.reps, int(os.environ.get("PROVBENCH_FIRST_REPS", self.reps)))
        self.scenarios = [SCENARIOS[name] for name in split(arguments.scenarios) or SCENARIOS]
        self.tools = [name for name in ALL_TOOLS if name in (split(arguments.tools) or ALL_TOOLS)]
        self.state: dict[str, str] = {}
        self.peers_python: Path | None = None
        self.install: Install | None = None
        self.failures: list[str] = []
        self.notes: list[str] = []
        #: deploy-1: each instance's live port before the run being judged.
        self.deploys = DeployJudge()

    # -- machines in the state a scenario needs (all untimed) ---------------------------------

    def converged(self, count: int, state: str) -> list[Machine]:
        """bench1..N with W (or the project's stack) converged by provisioner."""
        wanted = machines.names(count)
        stale = [name for name in wanted if self.state.get(name) != state]
        if stale:
            say(f"preparing {', '.join(stale)}: fresh machines, then {state} converged by "
                "provisioner")
            from provisioner import sandbox
            sandbox.down(stale)
            booted = machines.boot(count, say)
            fresh = [machine for machine in booted if machine.name in stale]
            machines.seed_package_cache(fresh)
            inventory = self.inventory(booted, state)
            for attempt in (1, 2):
                outcome = self.untimed("provisioner", "apply", False, booted, inventory)
                if outcome.succeeded:
                    break
                say(f"  converge attempt {attempt} failed: {outcome.problem}")
            else:
                raise RuntimeError(f"could not converge {state} on {', '.join(stale)}")
            if state == "stack":  # live instances, so a converged no-op includes them
                say(f"  deploying {inventories.APP_VERSIONS[0]} of the app once")
                self.deploy_untimed(booted, inventory, inventories.APP_VERSIONS[0])
            if state == "workload" and not machines.has_package_cache():
                machines.harvest_package_cache(fresh[0])
            self.state.update(dict.fromkeys(stale, state))
        return [machine for machine in machines.running() if machine.name in wanted]

    def fresh(self, count: int) -> list[Machine]:
        if not machines.has_package_cache():
            say("no package cache yet: converging one fresh machine with the floor script first")
            booted = machines.recreate(1, say)
            outcome = self.untimed("floor", "apply", True, booted,
                                   self.inventory(booted, "workload"))
            if not outcome.succeeded:
                raise RuntimeError(f"the floor's apply script failed: {outcome.problem}")
            machines.harvest_package_cache(booted[0])
        booted = machines.recreate(count, lambda line: None)
        machines.seed_package_cache(booted)
        self.state.update(dict.fromkeys(machines.names(count), "fresh"))
        return booted

    def inventory(self, booted: Sequence[Machine], state: str) -> Path:
        path = WORK_DIR / f"inventory-{state}-{len(booted)}.yml"
        if state == "stack":
            acme = machines.acme_server({inventories.site_name(machine): machine.address
                                         for machine in booted})
            return inventories.stack_inventory(booted, path, acme, archive_dir(WORK_DIR))
        return inventories.workload_inventory(booted, path)

    def deploy_untimed(self, booted: Sequence[Machine], inventory: Path, version: str) -> None:
        """``invoke deploy --version`` by provisioner, untimed (before the reps, between them)."""
        deploy_untimed(self.context("deploy", False, booted, inventory, version=version))

    # -- one run of one tool -----------------------------------------------------------------

    def context(self, mode: str, fresh: bool, booted: Sequence[Machine],
                inventory: Path, check_scripts: dict[str, floor.CheckScript] | None = None,
                version: str = "") -> Context:
        work = WORK_DIR / "run"
        work.mkdir(parents=True, exist_ok=True)
        return Context(mode, fresh, tuple(booted), inventory, work, self.peers_python,
                       check_scripts or {}, self.install, version)

    def untimed(self, tool: str, mode: str, fresh: bool, booted: Sequence[Machine],
                inventory: Path) -> Outcome:
        scripts = None if fresh or tool != "floor" else floor.check_scripts(inventory, ROLE_DIRS)
        prepared = make_tool(tool).prepare(self.context(mode, fresh, booted, inventory, scripts))
        outcome = prepared.evaluate(prepared.execute())
        if prepared.settle:
            prepared.settle()
        measure.reap_orphans()
        return outcome

    def timed(self, tool: str, context: Context) -> tuple[Outcome, measure.Sample]:
        prepared = make_tool(tool).prepare(context)
        namespaces = measure.machine_namespaces([machine.pid for machine in context.machines])
        raw, sample = measure.timed(prepared.execute, namespaces, prepared.settle)
        return prepared.evaluate(raw), sample

    def judge(self, scenario: Scenario, tool: str, outcome: Outcome,
              context: Context) -> tuple[bool, str]:
        """Whether the run did what the scenario asks, with the reason when it did not."""
        if scenario.mode == "deploy":
            return self.deploys.judge(outcome, context)
        if not outcome.succeeded:
            return False, outcome.problem or f"failed steps: {outcome.failed}"
        if len(outcome.changed) != (1 if tool == ONE_HOST else len(context.machines)):
            return False, f"results for {sorted(outcome.changed)} only"
        if scenario.state != "fresh" and outcome.total_changed:
            return False, f"reported changes on a converged host: {outcome.changed}"
        written = outcome.extra.get("bytecode_written", 0)
        if tool == FIRST_RUN and not written:
            return False, "the first run after installing cached no bytecode"
        if tool == "provisioner" and FIRST_RUN in self.tools and FIRST_RUN in scenario.tools \
                and written:
            return False, f"the second run after installing compiled {written} modules again"
        if scenario.state == "fresh":
            scripts = floor.check_scripts(context.provisioner_inventory,
                                          [PROJECT_ROOT / "roles", ROLES_DIR])
            check = self.untimed_check(context, scripts)
            if check.total_changed or any(check.failed.values()) or check.exit_code:
                return False, f"host not converged afterwards: {check.changed} {check.problem}"
        return True, ""

    def untimed_check(self, context: Context, scripts: dict[str, floor.CheckScript]) -> Outcome:
        check_context = Context("check", False, context.machines, context.provisioner_inventory,
                                context.work, None, scripts)
        prepared = make_tool("floor").prepare(check_context)
        return prepared.evaluate(prepared.execute())

    # -- scenarios ---------------------------------------------------------------------------

    def run_scenario(self, scenario: Scenario) -> dict[str, Any]:
        tools = [tool for tool in self.tools if tool in scenario.tools]
        record: dict[str, Any] = {"description": scenario.description, "hosts": scenario.hosts,
                                  "mode": scenario.mode, "skipped": None, "tools": {},
                                  "roles_per_host": None}
        if scenario.state == "stack" and "hardening" not in available_roles():
            record["skipped"] = ("the hardening role does not exist yet (roles/hardening); "
                                 "run this scenario again once it has landed")
            self.notes.append(f"{scenario.name} skipped: {record['skipped']}")
            say(f"== {scenario.name}: skipped ({record['skipped']})")
            return record
        if not tools:
            record["skipped"] = "none of the selected tools takes part in this scenario"
            return record
        reps = self.first_reps if scenario.state == "fresh" else self.reps
        say(f"== {scenario.name}: {scenario.description}; tools {', '.join(tools)}; {reps} reps")
        samples: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
        if scenario.state == "fresh":
            self.run_fresh_reps(scenario, tools, reps, samples)
        elif scenario.mode == "deploy":
            run_deploy_reps(self, scenario, tools, reps, samples)
        else:
            record["roles_per_host"] = self.run_converged_reps(scenario, tools, reps, samples)
        for tool, records in samples.items():
            record["tools"][tool] = {"samples": records, "summary": results.tool_summary(records)}
        results.add_ratios(record["tools"])
        return record

    def run_fresh_reps(self, scenario: Scenario, tools: Sequence[str], reps: int,
                       samples: dict[str, list[dict[str, Any]]]) -> None:
        """First converge: new machines before every single run."""
        for rep in range(reps):
            for tool in tools:
                booted = self.fresh(scenario.hosts)
                context = self.context("apply", True, booted, self.inventory(booted, "workload"))
                self.measure_one(scenario, tool, rep, context, samples)

    def run_converged_reps(self, scenario: Scenario, tools: Sequence[str], reps: int,
                           samples: dict[str, list[dict[str, Any]]]) -> int:
        """No-op and check runs on machines converged once, after one warm-up per tool; returns
        how many roles each host has (a no-op may cost that many round trips)."""
        booted = self.converged(scenario.hosts, scenario.state)
        inventory = self.inventory(booted, scenario.state)
        scripts = floor.check_scripts(inventory, [PROJECT_ROOT / "roles", ROLES_DIR])
        context = self.context(scenario.mode, False, booted, inventory, scripts)
        for tool in tools:
            machines.mark_lists_fresh(booted)
            outcome, sample = self.timed(tool, context)
            ok, why = self.judge(scenario, tool, outcome, context)
            say(f"  warm-up {tool:<20} {sample.wall:7.2f} s  {'ok' if ok else 'FAILED: ' + why}")
        try:
            for rep in range(reps):
                machines.mark_lists_fresh(booted)
                for tool in tools:
                    self.measure_one(scenario, tool, rep, context, samples)
        finally:
            end_kept_connections(context.work, booted)
            measure.reap_orphans()
        return len(floor.load_jobs(inventory, [PROJECT_ROOT / "roles", ROLES_DIR])[0].roles)

    def measure_one(self, scenario: Scenario, tool: str, rep: int, context: Context,
                    samples: dict[str, list[dict[str, Any]]]) -> None:
        outcome, sample = self.timed(tool, context)
        ok, why = self.judge(scenario, tool, outcome, context)
        if not ok:
            self.failures.append(f"{scenario.name} rep {rep + 1} {tool}: {why}")
        samples[tool].append(results.sample_record(
            sample, outcome.total_changed, sum(outcome.failed.values()), outcome.round_trips,
            ok, why, outcome.extra))
        trips = ", ".join(str(value) for value in outcome.round_trips.values())
        version = f"  to {context.version}" if context.version else ""
        say(f"  rep {rep + 1} {tool:<20} {sample.wall:7.2f} s{version}"
            f"  ctl CPU {sample.controller_cpu:5.2f}"
            f"  target CPU {sample.target_cpu:5.2f}  changed {outcome.total_changed:3d}  "
            f"sessions {trips}{'  NOISY' if sample.noisy else ''}"
            f"{'' if ok else '  FAILED: ' + why}")

    def run(self) -> int:
        measure.become_subreaper()
        shutil.rmtree(WORK_DIR, ignore_errors=True)
        WORK_DIR.mkdir(parents=True)
        say("installing provisioner afresh (a copy of this checkout, pip install -e, "
            "nothing precompiled)")
        self.install = fresh_install(PROJECT_ROOT, WORK_DIR / "install")
        if any(tool in ("pyinfra", "ansible", "ansible-tuned") for tool in self.tools) or \
                not self.smoke:
            self.peers_python = ensure_peers_venv(say)
        say("removing leftover bench machines")
        machines.remove_all()
        started = datetime.datetime.now(datetime.UTC)
        data: dict[str, Any] = {
            "date": started.strftime("%Y-%m-%d %H:%M"), "smoke": self.smoke, "reps": self.reps,
            "first_converge_reps": self.first_reps, "machine": results.describe_machine(),
            "versions": {**results.project_versions(),
                         **(peer_versions(self.peers_python) if self.peers_python else {})},
            "scenarios": {}, "notes": self.notes,
        }
        try:
            for scenario in self.scenarios:
                data["scenarios"][scenario.name] = self.run_scenario(scenario)
        finally:
            if os.environ.get("PROVBENCH_KEEP_MACHINES") != "1":
                say("removing the bench machines")
                machines.remove_all()
        data["failures"] = self.failures
        data["duration_seconds"] = round(
            (datetime.datetime.now(datetime.UTC) - started).total_seconds())
        data["targets"] = results.targets(data)
        say("")
        say(results.terminal_table(data))
        say("")
        say("\n".join(results.target_lines(data["targets"])))
        for path in results.write_all(data, self.smoke, self.peers_python):
            say(f"wrote {path.relative_to(PROJECT_ROOT)}")
        for failure in self.failures:
            say(f"FAILED: {failure}")
        return 1 if self.failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    os.environ["PROVISIONER_ROLES_PATH"] = str(ROLES_DIR)
    return Runner(arguments).run()


if __name__ == "__main__":
    sys.exit(main())
