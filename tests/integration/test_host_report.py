"""The host report on a real machine (rp1), looked at in headless Chromium (Debian's chromium).

rp1 runs nginx with one self-signed site (so the page has a certificate's days left) and the
secretuser test role, whose environment file holds a host secret and an inventory secret from
the controller's environment: the first run's diff of that file is on the page, each line a
secret went into masked whole. The page of ``provision --html`` has the run's figures; after
``invoke verify``, the page of ``invoke report`` is rendered by Chromium, screenshotted, and
the figures of its rendered DOM are the JSON's (``--json``). A converged run costs one round
trip, and the page one more (the live status); a host that cannot be reached still gets its
page, which says why.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioner import sandbox
from tests.integration.conftest import (
    TEST_ROLES,
    Invocation,
    edit_inventory,
    invoke_task,
    own_machines,
    root_output,
)
from tests.integration.roles.secretuser.role import ENV_FILE
from tests.unit.page_figures import expected_figures, figures

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium")
#: An inventory secret, read from the controller's environment by the run (never shown).
SIGNING_KEY = "rp-signing-key-4f1c9e2b7a6d"
SITE = "rp"


def host_vars() -> dict[str, Any]:
    return {
        "host_secrets": {"db_password": {"kind": "password", "length": 24}},
        "secretuser_db_password": {"secret": "host:db_password"},
        "secretuser_signing_key": {"secret": "env:RP_SIGNING_KEY"},
        "nginx_upstreams": [{"name": "web", "servers": ["127.0.0.1:9000"]}],
        "nginx_sites": [{"name": SITE, "server_names": ["rp.example.test"],
                         "certificate": "self-signed", "locations": [{"path": "/",
                                                                      "upstream": "web"}]}],
    }


@dataclass(frozen=True)
class ReportHost:
    machine: sandbox.Machine
    inventory: Path

    @property
    def name(self) -> str:
        return self.machine.name

    def file(self, name: str) -> Path:
        return self.inventory.parent / name

    def invoke(self, *arguments: str) -> Invocation:
        return invoke_task(*arguments, inventory=self.inventory, timeout=300,
                           report=self.file("run.json"),
                           environment={"PROVISIONER_ROLES_PATH": str(TEST_ROLES),
                                        "RP_SIGNING_KEY": SIGNING_KEY})


@dataclass(frozen=True)
class Runs:
    first: Invocation
    verify: Invocation
    report: Invocation


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportHost]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install "
                    "--no-install-recommends chromium)")
    with own_machines(tmp_path_factory, "rp") as (booted, inventory):
        edit_inventory(inventory, lambda data: data["hosts"][booted[0].name].update(
            groups=[], roles=["secretuser", "nginx"], vars=host_vars()))
        yield ReportHost(booted[0], inventory)


@pytest.fixture(scope="module")
def runs(host: ReportHost) -> Runs:
    first = host.invoke("provision", "--html", str(host.file("first.html")))
    verify = host.invoke("verify", "--host", host.name)
    report = host.invoke("report", "--host", host.name, "--html", str(host.file("page.html")),
                         "--json", str(host.file("page.json")))
    return Runs(first, verify, report)


def chromium(*arguments: str, profile: Path) -> str:
    done = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                           f"--user-data-dir={profile}", *arguments], capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_the_page_of_the_run_shows_the_runs_own_figures(host: ReportHost, runs: Runs) -> None:
    assert runs.first.exit_code == 0, runs.first.output
    run = runs.first.report["hosts"][host.name]
    shown = figures(host.file("first.html").read_text())

    assert run["changed"] > 0
    assert [shown[(host.name, f"provision.{key}")] for key in ("ok", "changed", "failed",
                                                               "round_trips")] == \
        [str(run[key]) for key in ("ok", "changed", "failed", "round_trips")]


def test_chromium_renders_the_report_and_its_figures_are_the_jsons(
        host: ReportHost, runs: Runs, tmp_path: Path) -> None:
    assert runs.verify.exit_code == 0, runs.verify.output
    assert runs.report.exit_code == 0, runs.report.output
    data = json.loads(host.file("page.json").read_text())
    url = host.file("page.html").as_uri()
    screenshot = tmp_path / "page.png"

    chromium(f"--screenshot={screenshot}", "--window-size=1280,2000", url, profile=tmp_path)
    dom = chromium("--dump-dom", url, profile=tmp_path)

    assert png_size(screenshot) == (1280, 2000) and screenshot.stat().st_size > 20_000
    on_page = figures(dom)
    assert on_page == expected_figures(data)
    ours = data["hosts"][host.name]
    assert int(on_page[(host.name, "verify.passed")]) == ours["verify"]["passed"] > 0
    assert 364 <= int(on_page[(host.name, f"certificates.{SITE}.days_left")]) <= 366
    assert on_page[(host.name, "live.round_trips")] == "1"


def test_no_secret_reaches_a_page_or_the_json_and_the_diff_shows_it_masked(
        host: ReportHost, runs: Runs) -> None:
    password = root_output(host.machine, "cat /etc/provisioner/secrets/db_password").strip()
    pages = [host.file(name).read_text() for name in ("first.html", "page.html", "page.json")]

    assert password and password in root_output(host.machine, f"cat {ENV_FILE}")
    assert [page for page in pages if password in page or SIGNING_KEY in page] == []
    assert f"+++ {ENV_FILE} (desired)\n@@ -0,0 +1,2 @@\n+***\n+***\n</pre>" in pages[0]


def test_a_converged_run_costs_one_round_trip_and_its_page_one_more(host: ReportHost,
                                                                    runs: Runs) -> None:
    host.invoke("provision")  # the first run changed what facts describe: learn them again
    plain = host.invoke("provision")
    paged = host.invoke("provision", "--html", str(host.file("again.html")))
    shown = figures(host.file("again.html").read_text())

    assert (plain.exit_code, paged.exit_code) == (0, 0), plain.output + paged.output
    assert plain.report["hosts"][host.name]["round_trips"] == 1
    assert paged.report["hosts"][host.name]["round_trips"] == 1
    assert shown[(host.name, "provision.round_trips")] == "1"
    assert shown[(host.name, "live.round_trips")] == "1"


def test_an_unreachable_host_still_gets_its_page_saying_why(host: ReportHost,
                                                           runs: Runs) -> None:
    original = host.inventory.read_text()
    edit_inventory(host.inventory, lambda data: data["hosts"][host.name].update(port=1))
    try:
        done = host.invoke("report", "--host", host.name,
                           "--html", str(host.file("unreachable.html")))
    finally:
        host.inventory.write_text(original)
    page = host.file("unreachable.html").read_text()

    assert done.exit_code == 1, done.output
    assert "The live status could not be read: host unreachable" in page
    assert figures(page)[(host.name, "provision.round_trips")] == "1"
