"""The deploy-1 scenario's parts of the runner: the app's releases, untimed deploys, and the
judge that reads each instance's live port and version off the host before and after a run.

Kept apart from benchmarks/run.py so the runner stays about scenarios in general; the runner
calls these and passes itself to ``run_deploy_reps``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import floor, inventories, measure
from benchmarks.tools import (
    PROJECT_ROOT,
    ROLES_DIR,
    Context,
    Outcome,
    end_kept_connections,
    make_tool,
)

if TYPE_CHECKING:
    from benchmarks.run import Runner, Scenario

ROLE_DIRS = [PROJECT_ROOT / "roles", ROLES_DIR]


def say(line: str) -> None:
    """A progress line as run.say prints it (run is not imported: it imports this module)."""
    print(line, flush=True)


def archive_dir(work_dir: Path) -> Path:
    """The app's v1 and v2 as docker-save archives (tests/integration/app_images.py), built
    once per bench run under ``work_dir``."""
    from tests.integration.app_images import build_image_archive

    directory = work_dir / "releases"
    if not directory.is_dir():
        directory.mkdir(parents=True)
        for version in inventories.APP_VERSIONS:
            build_image_archive(directory, version, app=inventories.APP_NAME)
    return directory


def deploy_untimed(context: Context) -> None:
    """``invoke deploy --version`` by provisioner, untimed (before the reps, between them)."""
    prepared = make_tool("provisioner").prepare(context)
    outcome = prepared.evaluate(prepared.execute())
    measure.reap_orphans()
    if not outcome.succeeded:
        raise RuntimeError(f"could not deploy {context.version}: {outcome.problem}")


def app_states(context: Context) -> dict[str, str]:
    """Per host: deployed_state_script's output (live files, health, servers, units)."""
    found = {}
    for job in floor.load_jobs(context.provisioner_inventory, ROLE_DIRS):
        done = subprocess.run(floor.ssh_command(job.config), capture_output=True, text=True,
                              input=floor.deployed_state_script(floor.app_target(job)),
                              check=False, timeout=120)
        found[job.config.name] = done.stdout
    return found


class DeployJudge:
    """Remembers each instance's live port before the run being judged, so the judge can tell
    that every instance moved."""

    def __init__(self) -> None:
        self.ports_before: dict[str, dict[int, int]] = {}

    def serving(self, context: Context) -> str:
        """The version every instance of every host serves ("" when they differ); remembers
        the live ports, so the next run's judge can tell that each instance moved."""
        versions = set()
        for name, output in app_states(context).items():
            states = floor.parse_live_states(output)
            self.ports_before[name] = {instance: state[0] for instance, state in states.items()}
            versions |= {state[1] for state in states.values()} or {""}
        return versions.pop() if len(versions) == 1 else ""

    def judge(self, outcome: Outcome, context: Context) -> tuple[bool, str]:
        """A deploy must exit 0 and leave every instance moved to the version, healthy, with
        the server list and units that go with it (floor.deployed_problems); its ``changed``
        becomes the instances that moved."""
        problems = [] if outcome.succeeded else [outcome.problem or f"failed: {outcome.failed}"]
        jobs = {job.config.name: job for job in
                floor.load_jobs(context.provisioner_inventory, ROLE_DIRS)}
        for name, output in app_states(context).items():
            app = floor.app_target(jobs[name])
            before = self.ports_before.get(name, {})
            found = floor.deployed_problems(app, context.version, before, output)
            problems += [f"{name}: {problem}" for problem in found]
            outcome.changed[name] = sum(before.get(instance) != state[0] for instance, state in
                                        floor.parse_live_states(output).items())
        outcome.extra["version"] = context.version
        return not problems, "; ".join(problems)


def run_deploy_reps(runner: Runner, scenario: Scenario, tools: Sequence[str], reps: int,
                    samples: dict[str, list[dict[str, Any]]]) -> None:
    """Rolling deploys on a converged stack host: rep 1 moves v1 -> v2, rep 2 v2 -> v1, and
    so on, for every tool (the host is put back to the rep's start version by an untimed
    provisioner deploy whenever the tool before left it at the rep's end version), so every
    run moves both instances. Before them an untimed provisioner deploy of the version the
    host does not serve (so both images are there), and one untimed warm-up per tool."""
    booted = runner.converged(scenario.hosts, scenario.state)
    inventory = runner.inventory(booted, scenario.state)
    first, second = inventories.APP_VERSIONS
    base = runner.context("deploy", False, booted, inventory)
    deploys = runner.deploys
    try:
        # Both versions' images on the host before any floor run: the floor's script loads
        # none (provisioner's deploy sends and loads a missing one in its prepare round trip).
        serving = deploys.serving(base)
        runner.deploy_untimed(booted, inventory, second if serving == first else first)
        for tool in tools:
            version = second if deploys.serving(base) == first else first
            context = runner.context("deploy", False, booted, inventory, version=version)
            outcome, sample = runner.timed(tool, context)
            ok, why = runner.judge(scenario, tool, outcome, context)
            say(f"  warm-up {tool:<20} {sample.wall:7.2f} s  to {version}  "
                f"{'ok' if ok else 'FAILED: ' + why}")
        for rep in range(reps):
            start, end = (first, second) if rep % 2 == 0 else (second, first)
            for tool in tools:
                if deploys.serving(base) != start:
                    runner.deploy_untimed(booted, inventory, start)
                    deploys.serving(base)
                context = runner.context("deploy", False, booted, inventory, version=end)
                runner.measure_one(scenario, tool, rep, context, samples)
    finally:
        end_kept_connections(base.work, booted)
        measure.reap_orphans()
