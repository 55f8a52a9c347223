"""An ``invoke verify`` run on one host as its record: pytest's counts and the failing tests.

The counts come from the JUnit XML pytest writes (``--junitxml``), which the verify runner
already accepts as an extra argument. Only test names are kept, never a failure's message: an
assertion may print a variable the spec read, and the specs read the host's variables with
their secrets revealed.
"""

from __future__ import annotations

import re
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provisioner.host import secrets_in
from provisioner.report.provision_record import timestamp
from provisioner.run.session import HostJob
from provisioner.secrets.redaction import redact
from provisioner.secrets.values import Secret
from provisioner.verify.runner import verify_host


def verify_record(junit_xml: str | None, exit_code: int, host: str, ran_at: str,
                  duration: float, secrets: Sequence[Secret] = ()) -> dict[str, Any]:
    """The record; without a readable JUnit file (no spec to run, pytest stopped before its
    tests) the counts are None and the exit code says the rest."""
    record: dict[str, Any] = {"host": host, "ran_at": ran_at, "exit_code": exit_code,
                              "duration_seconds": round(duration, 3), "passed": None,
                              "failed": None, "skipped": None, "failing": []}
    if junit_xml is not None:
        record.update(junit_counts(junit_xml, host, secrets))
    return record


def junit_counts(junit_xml: str, host: str, secrets: Sequence[Secret] = ()) -> dict[str, Any]:
    """passed, failed (failures and errors), skipped and the failing tests' names; empty when
    the text is not pytest's JUnit XML."""
    try:
        root = ElementTree.fromstring(junit_xml)
    except ElementTree.ParseError:
        return {}
    cases = list(root.iter("testcase"))
    failing = [case for case in cases
               if case.find("failure") is not None or case.find("error") is not None]
    skipped = [case for case in cases if case.find("skipped") is not None
               and case not in failing]
    names = list(dict.fromkeys(redact(shown_test_name(case.get("name", ""), host), secrets)
                               for case in failing))
    return {"passed": len(cases) - len(failing) - len(skipped), "failed": len(failing),
            "skipped": len(skipped), "failing": names}


def shown_test_name(name: str, host: str) -> str:
    """A test's name without the testinfra host in its parameters (every test has it):
    ``test_x[ssh://web1-port-22]`` -> ``test_x[port-22]``."""
    name = re.sub(rf"\[ssh://{re.escape(host)}\]$", "", name)
    return name.replace(f"[ssh://{host}-", "[")


def run_verify(job: HostJob, pytest_args: Sequence[str] = ()) -> tuple[int, dict[str, Any]]:
    """Run the job's specs (verify_host) with pytest writing its JUnit XML; pytest's exit code
    and the record. A --junitxml of the caller's own is read instead of ours."""
    started, clock = datetime.now(UTC), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="provisioner-verify-record-") as work:
        given = junit_argument(pytest_args)
        junit = Path(given) if given else Path(work) / "junit.xml"
        extra = [*pytest_args, *([] if given else [f"--junitxml={junit}"])]
        code = verify_host(job, extra)
        text = junit.read_text(encoding="utf-8") if junit.is_file() else None
    return code, verify_record(text, code, job.config.name, timestamp(started),
                               time.monotonic() - clock, secrets_in(job.variables))


def junit_argument(pytest_args: Sequence[str]) -> str:
    """The file of a --junitxml (or --junit-xml) among pytest's arguments, else ""."""
    for index, argument in enumerate(pytest_args):
        name, equals, value = argument.partition("=")
        if name in ("--junitxml", "--junit-xml"):
            if equals:
                return value
            return pytest_args[index + 1] if index + 1 < len(pytest_args) else ""
    return ""
