"""What ``invoke test`` runs: lint, types, unit tests, the integration tests on each sandbox
target, the benchmark smoke.

The integration targets run side by side: Debian 12 (every module but the guides) in the
foreground; beside it one lane, Debian 13, then the minimal image, their output kept in logs and
shown when they end; then, alone, the five production guides (tests/integration/guides, Debian
12). Most of an integration run is spent waiting on the machines (apt, service
starts, timers), so two at once share two cores without doubling anyone's time. Each target's
machines carry a name tag or prefix of their own (tests/integration/conftest.py), so they never
meet.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SESSION_MACHINE_TESTS = ("tests/integration/test_connection.py",
                         "tests/integration/test_connection_reuse.py",
                         "tests/integration/test_provision.py")
"""The integration tests on the session's two machines, whose suite and image variant
PROVISIONER_TEST_SUITE and PROVISIONER_TEST_VARIANT choose; the other modules boot their own."""


@dataclass(frozen=True)
class Target:
    """One integration run: its environment and the test paths it runs."""

    environment: Mapping[str, str]
    paths: tuple[str, ...]


#: Runs on Debian 13 only, beside the longer Debian 12 run: the roles living together on one
#: host is what it proves, and Debian 13 is where the two targets differ more (cron, sshd).
FULL_STACK = "tests/integration/test_full_stack.py"
#: Debian 13 only too, for time: the deploys (2 minutes) would take the Debian 12 run past the
#: suite's 20 minutes. Run it there by hand with PROVISIONER_TEST_SUITE=bookworm (it passes on
#: both: Docker 20.10 and 26).
DEPLOY = "tests/integration/test_deploy.py"
#: The five production guides, each on machines of its own, provisioned side by side
#: (tests/integration/guides/conftest.py): Debian 12, where STET's PostgreSQL 15 is.
GUIDES = "tests/integration/guides"
FOREGROUND = Target({"PROVISIONER_TEST_SUITE": "bookworm"},
                    ("tests/integration", f"--deselect={FULL_STACK}", f"--deselect={DEPLOY}",
                     f"--ignore={GUIDES}"))
BESIDE = (
    (Target({"PROVISIONER_TEST_SUITE": "trixie"},
            (*SESSION_MACHINE_TESTS, "tests/integration/test_postgres.py",
             "tests/integration/test_nginx.py", "tests/integration/test_systemd_units.py",
             DEPLOY, FULL_STACK)),
     Target({"PROVISIONER_TEST_VARIANT": "minimal"}, SESSION_MACHINE_TESTS)),
)
#: Last, alone: the guides' eleven machines booting beside the other runs made machines fail to
#: boot and the timing-bound tests (PgBouncer's rotation and restore) fail on a 2-core host
#: (CI, 2026-12-04).
AFTER = Target({"PROVISIONER_TEST_SUITE": "bookworm"}, (GUIDES,))
"""Where `invoke test` runs which integration tests (README, Tests), lane by lane beside the
foreground: all but the full stack, the deploys and the guides on Debian 12; the session-machine
tests, PostgreSQL 17's, nginx 1.26's (OpenSSL 3.5: http2 on, X25519MLKEM768), systemd 257's
(other words for a bad value), the deploys and the full stack on Debian 13, then the
session-machine tests on the minimal image; the guides after all of them (AFTER)."""


@dataclass
class Outcome:
    """How the targets run beside the foreground ended."""

    failed: list[str] = field(default_factory=list)
    logs: list[tuple[str, Path, float]] = field(default_factory=list)


def shown(environment: Mapping[str, str], command: Sequence[str]) -> str:
    return "$ " + " ".join([*(f"{key}={value}" for key, value in environment.items()), *command])


def run_step(environment: Mapping[str, str], command: Sequence[str]) -> bool:
    print(shown(environment, command), flush=True)
    return subprocess.run(command, env={**os.environ, **environment}, check=False).returncode == 0


def run_beside(targets: Sequence[Target], pytest: Sequence[str], logs: Path,
               outcome: Outcome) -> None:
    """Each target of a lane in turn, its output into a log of its own."""
    for target in targets:
        command = [*pytest, *target.paths]
        handle, name = tempfile.mkstemp(dir=logs, prefix="integration-", suffix=".log")
        os.close(handle)
        log = Path(name)
        started = time.monotonic()
        with log.open("w") as out:
            out.write(shown(target.environment, command) + "\n")
            out.flush()
            code = subprocess.run(command, env={**os.environ, **target.environment},
                                  stdout=out, stderr=subprocess.STDOUT, check=False).returncode
        outcome.logs.append((shown(target.environment, command), log,
                             time.monotonic() - started))
        if code != 0:
            outcome.failed.append(shown(target.environment, command))


def run_integration(pytest: Sequence[str]) -> bool:
    """The foreground target here, the others beside it; every log shown, True when all pass."""
    with tempfile.TemporaryDirectory(prefix="provisioner-suite-") as directory:
        outcome = Outcome()
        names = "; ".join(", ".join(" ".join((*target.environment.values(), *target.paths[:1]))
                                    for target in lane) for lane in BESIDE)
        print(f"# beside the Debian 12 run: {names} (their output follows it)", flush=True)
        lanes = [threading.Thread(target=run_beside, args=(lane, pytest, Path(directory),
                                                             outcome)) for lane in BESIDE]
        for lane in lanes:
            lane.start()
        foreground = run_step(FOREGROUND.environment, [*pytest, *FOREGROUND.paths])
        for lane in lanes:
            lane.join()
        for command, log, seconds in outcome.logs:
            print(f"{command}   # ran beside, {seconds:.0f} s", flush=True)
            print(log.read_text(), end="", flush=True)
        for command in outcome.failed:
            print(f"FAILED: {command}", flush=True)
        after = run_step(AFTER.environment, [*pytest, *AFTER.paths])
        return foreground and not outcome.failed and after


def run_suite(unit: bool, pytest_args: str) -> bool:
    """Everything ``invoke test`` runs, in order; stops at the first step that fails."""
    python = sys.executable
    for command in ([python, "-m", "ruff", "check", "."], [python, "-m", "mypy"],
                    [python, "-m", "pytest", "tests/unit", "-q"]):
        if not run_step({}, command):
            return False
    if unit:
        return True
    pytest = [python, "-m", "pytest", "-m", "integration", "-v", *pytest_args.split()]
    if {"PROVISIONER_TEST_SUITE", "PROVISIONER_TEST_VARIANT"} & set(os.environ):
        passed = run_step({}, [*pytest, "tests/integration"])
    else:
        passed = run_integration(pytest)
    return passed and run_step({}, [python, "-m", "benchmarks.run", "--reps", "1", "--smoke"])
