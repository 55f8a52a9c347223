"""The five production guides as scenarios: each guide's example inventory from inventories/,
put on sandbox machines and provisioned, all guides at once.

Each guide module declares ``GUIDE = Guide(...)``: its inventory, the hosts to boot, the site
names the ACME server must resolve, the app releases it deploys. The session boots the machines
of every guide collected (and one Pebble machine they share), writes each inventory's sandbox
copy (addresses, the sandbox key and known_hosts, the controller exempt from SSH limits and
bans, Pebble as the ACME server, the test image instead of the guide's registry image), and
provisions every guide side by side: the first runs are most of the time a guide costs, so they
overlap instead of adding up. A module then checks its guide from outside.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner import sandbox
from provisioner.sandbox.acme import AcmeServer, start_acme_server
from provisioner.sandbox.paths import KEY_PATH, KNOWN_HOSTS_PATH
from provisioner.sandbox.ssh import read_public_key
from provisioner.transport.kept_logins import close_keepers
from tests.integration.app_images import IMAGE, build_image_archive
from tests.integration.conftest import (
    CONTROLLER_ADDRESS,
    PROJECT_ROOT,
    SUITE,
    TARGET_TAG,
    Invocation,
    invoke_task,
    root_output,
)

INVENTORIES = PROJECT_ROOT / "inventories"


@dataclass(frozen=True)
class Release:
    """A version of the test image the guide deploys (``healthy=False``: its /health fails)."""

    version: str
    healthy: bool = True


@dataclass(frozen=True)
class Guide:
    """What a guide's scenario needs booted and prepared before its first provision."""

    #: inventories/<name>.yml
    name: str
    #: Machine name prefix (letters, unique per guide).
    prefix: str
    #: The inventory's hosts, each booted as a sandbox machine.
    hosts: tuple[str, ...]
    #: Site names the ACME server resolves, to the inventory host serving each.
    acme_names: Mapping[str, str] = field(default_factory=dict)
    releases: tuple[Release, ...] = ()
    #: Files the inventory's secret references name (relative path -> content), written next to
    #: the sandbox copy, as the guide's operator keeps them next to theirs.
    secret_files: Mapping[str, str] = field(default_factory=dict)
    #: Variables the sandbox needs besides the generic ones (e.g. a test image's port).
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Scenario:
    """A guide on its machines: the inventory's sandbox copy and its first provision."""

    guide: Guide
    inventory: Path
    machines: dict[str, sandbox.Machine]
    acme: AcmeServer | None
    first_run: Invocation | None = None

    def invoke(self, *arguments: str, timeout: int = 1200) -> Invocation:
        return invoke_task(*arguments, inventory=self.inventory,
                           report=self.inventory.parent / f"{arguments[0]}.json",
                           timeout=timeout)

    def root(self, host: str, command: str, timeout: int = 120) -> str:
        """What a root shell command on the host printed (it must succeed)."""
        return root_output(self.machines[host], command, timeout=timeout)

    def address(self, host: str) -> str:
        return self.machines[host].address

    @property
    def ca_file(self) -> Path:
        """Pebble's root certificate, which the sites' certificates chain to."""
        return self.inventory.parent / "pebble-root.pem"

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def https(self, host: str, name: str, timeout: float = 5) -> http.client.HTTPSConnection:
        """An HTTPS connection to site ``name`` at the host's address (SNI and the certificate
        checked against Pebble's root), for tests that send many requests in one process."""
        return SiteConnection(name, self.address(host), self.tls_context(), timeout)

    def curl(self, host: str, url: str, *options: str) -> subprocess.CompletedProcess[str]:
        """curl from this machine to ``url``, its name resolved to the host's address and the
        certificate checked against Pebble's root; ``-w %{http_code}`` output at the end."""
        name = url.split("/")[2].split(":")[0]
        port = "443" if url.startswith("https") else "80"
        return subprocess.run(
            ["curl", "-sS", "--max-time", "10", "--cacert", str(self.ca_file),
             "--resolve", f"{name}:{port}:{self.address(host)}", *options, url],
            capture_output=True, text=True, check=False)


class SiteConnection(http.client.HTTPSConnection):
    """HTTPS to a site's name at a given address: the name goes into SNI and the certificate
    check, the address is where the socket goes (the sandbox has no DNS for the names)."""

    def __init__(self, name: str, address: str, context: ssl.SSLContext,
                 timeout: float) -> None:
        super().__init__(name, 443, timeout=timeout, context=context)
        self.address, self.tls = address, context

    def connect(self) -> None:
        raw = socket.create_connection((self.address, 443), timeout=self.timeout)
        self.sock = self.tls.wrap_socket(raw, server_hostname=self.host)


def reaches(address: str, port: int) -> bool:
    """Whether a TCP connection from this machine to the address and port is accepted."""
    try:
        with socket.create_connection((address, port), timeout=3):
            return True
    except OSError:
        return False


def guides_collected(session: pytest.Session) -> list[Guide]:
    """The GUIDE of every module whose tests this session runs, in collection order."""
    seen: dict[str, Guide] = {}
    for item in session.items:
        guide = getattr(getattr(item, "module", None), "GUIDE", None)
        if isinstance(guide, Guide):
            seen.setdefault(guide.name, guide)
    return list(seen.values())


def replace_everywhere(data: dict[str, Any], key: str, value: Callable[[Any], Any]) -> None:
    """Give ``key`` value(old) in every vars section that sets it, and in defaults.vars: the
    sandbox's value wins at whatever level the guide's author set theirs."""
    sections = [data.setdefault("defaults", {}).setdefault("vars", {})]
    sections += [group.get("vars") or {} for group in (data.get("groups") or {}).values()]
    sections += [host.get("vars") or {} for host in (data.get("hosts") or {}).values()]
    for section in sections:
        if key in section or section is sections[0]:
            section[key] = value(section.get(key))


def constant(value: Any) -> Callable[[Any], Any]:
    return lambda _old: value


def sandbox_copy(guide: Guide, machines: Mapping[str, sandbox.Machine], archives: Path,
                 acme: AcmeServer | None) -> dict[str, Any]:
    """The guide's inventory as the sandbox reaches it; everything else as its author wrote."""
    data: dict[str, Any] = yaml.safe_load((INVENTORIES / f"{guide.name}.yml").read_text())
    defaults = data.setdefault("defaults", {})
    defaults["user"] = "admin"
    defaults["ssh"] = {**(defaults.get("ssh") or {}), "identity_file": str(KEY_PATH),
                       "known_hosts": str(KNOWN_HOSTS_PATH), "trust_on_first_use": False}
    for name, host in data["hosts"].items():
        host["address"] = machines[name].address
        (host.get("ssh") or {}).pop("jump_host", None)
    fixed: dict[str, Any] = {
        "hardening_admin_user": "admin",
        "hardening_admin_authorized_keys": [read_public_key()],
        "app_image": IMAGE, "app_archive_dir": str(archives), "app_source": "archive",
        **guide.overrides,
    }
    if acme is not None:
        fixed.update(certbot_server=acme.directory_url, certbot_server_ca=acme.api_ca_pem)
    for key, value in fixed.items():
        replace_everywhere(data, key, constant(value))
    for key in ("ufw_ssh_unlimited_sources", "fail2ban_ignoreip"):
        replace_everywhere(data, key, lambda old: [*(old or []), CONTROLLER_ADDRESS])
    # SSH kept to an admin network stays so, with this machine in it (an empty list: anywhere).
    replace_everywhere(data, "ufw_ssh_sources",
                       lambda old: [*old, CONTROLLER_ADDRESS] if old else [])
    return data


def boot(guides: list[Guide]) -> tuple[dict[str, dict[str, sandbox.Machine]],
                                      sandbox.Machine | None]:
    """Each guide's machines (host name -> machine) and, when one needs ACME, a Pebble one."""
    booted: dict[str, dict[str, sandbox.Machine]] = {}
    for guide in guides:
        machines = sandbox.up(count=len(guide.hosts), suite=SUITE,
                              prefix=guide.prefix + TARGET_TAG, progress=print)
        by_name = {machine.name: machine for machine in machines}
        booted[guide.name] = {host: by_name[f"{guide.prefix}{TARGET_TAG}{number}"]
                              for number, host in enumerate(guide.hosts, start=1)}
    pebble = None
    if any(guide.acme_names for guide in guides):
        prefix = "ga" + "".join(guide.prefix[1:] for guide in guides if guide.acme_names)
        pebble = sandbox.up(count=1, suite=SUITE, prefix=prefix[:9] + TARGET_TAG,
                            progress=print)[0]
    return booted, pebble


def acme_names(guides: list[Guide], booted: Mapping[str, Mapping[str, sandbox.Machine]]
               ) -> dict[str, str]:
    return {name: booted[guide.name][host].address
            for guide in guides for name, host in guide.acme_names.items()}


def prepare(guide: Guide, machines: Mapping[str, sandbox.Machine], directory: Path,
            archives: Path, acme: AcmeServer | None) -> Scenario:
    directory.mkdir(parents=True, exist_ok=True)
    for relative, content in guide.secret_files.items():
        secret = directory / relative
        secret.parent.mkdir(parents=True, exist_ok=True)
        secret.write_text(content)
        secret.chmod(0o600)
    if acme is not None:
        (directory / "pebble-root.pem").write_text(acme.root_pem())
    inventory = directory / f"{guide.name}.yml"
    inventory.write_text(yaml.safe_dump(sandbox_copy(guide, machines, archives, acme),
                                        sort_keys=False))
    return Scenario(guide, inventory, dict(machines), acme)


def app_name(data: Mapping[str, Any]) -> str:
    """The inventory's app_name, wherever its author set it (defaults, a group or a host)."""
    sections = [(data.get("defaults") or {}).get("vars") or {}]
    sections += [group.get("vars") or {} for group in (data.get("groups") or {}).values()]
    sections += [host.get("vars") or {} for host in (data.get("hosts") or {}).values()]
    return next((str(section["app_name"]) for section in sections
                 if section.get("app_name")), "testapp")


def build_releases(guides: list[Guide], archives: Path) -> None:
    """Every guide's release archives, once per distinct (app name, version)."""
    for guide in guides:
        app = app_name(yaml.safe_load((INVENTORIES / f"{guide.name}.yml").read_text()))
        for release in guide.releases:
            build_image_archive(archives, release.version, healthy=release.healthy, app=app)


@pytest.fixture(scope="session")
def guides(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[dict[str, Scenario]]:
    """Every collected guide booted, prepared and provisioned once (side by side)."""
    os.environ.setdefault("PROVISIONER_RUNTIME_DIR", str(tmp_path_factory.mktemp("kept")))
    os.environ.setdefault("PROVISIONER_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    chosen = guides_collected(request.session)
    booted, pebble = boot(chosen)
    every = [machine for machines in booted.values() for machine in machines.values()]
    every += [pebble] if pebble else []
    try:
        acme = start_acme_server(pebble, acme_names(chosen, booted)) if pebble else None
        archives = tmp_path_factory.mktemp("releases")
        build_releases(chosen, archives)
        scenarios = {guide.name: prepare(guide, booted[guide.name],
                                         tmp_path_factory.mktemp(guide.name), archives,
                                         acme if guide.acme_names else None)
                     for guide in chosen}
        with ThreadPoolExecutor(max_workers=len(scenarios) or 1) as pool:
            runs = pool.map(lambda scenario: scenario.invoke("provision"), scenarios.values())
            for scenario, run in zip(scenarios.values(), runs, strict=True):
                scenario.first_run = run
        yield scenarios
    finally:
        close_keepers({machine.address for machine in every})
        if not os.environ.get("PROVISIONER_KEEP_SANDBOX"):
            sandbox.down([machine.name for machine in every])
