"""Packages and services: the security archive, automatic updates, journal, time, auditing.

The security archive comes first so that every package installed afterwards already comes with
its security fixes. Services that need a kernel of their own (auditd, AppArmor) are skipped in
containers, where that kernel belongs to the host.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from provisioner.commands import quote
from provisioner.facts import Facts
from provisioner.host import Host
from provisioner.ops.apt import apt_command, ensure_packages, wait_for_dpkg_lock
from provisioner.ops.apt_sources import (
    AptEntry,
    archive_keyring,
    main_mirror,
    plan_source_file,
    probe_sources,
    read_sources,
    remove_source_action,
    render_one_line_source,
    source_mode,
)
from provisioner.ops.checks import ensure_command_result
from provisioner.ops.file_writes import DesiredFile
from provisioner.ops.files import ensure_directory, ensure_template
from provisioner.ops.systemd import ensure_service
from provisioner.step import Plan, Probed, Refused, Step

SECURITY_SOURCES = "/etc/apt/sources.list.d/provisioner-security.list"
#: Where earlier versions wrote it, in deb822: replaced by the one-line file, which Lynis 3.0.8
#: (Debian 12's) recognises as a security archive (PKGS-7388 greps for "security " or
#: security.debian.org, and a deb822 stanza has neither).
DEB822_SECURITY_SOURCES = "/etc/apt/sources.list.d/provisioner-security.sources"
JOURNALD_RESTART = "journald:restart"


def security_suites(entries: Sequence[AptEntry]) -> list[str]:
    return [suite for entry in entries for suite in entry.suites if suite.endswith("-security")]


def security_uri(mirror_uri: str, os_id: str) -> str:
    """Debian serves security updates beside the archive, at the same path plus ``-security``.

    ``<mirror>/debian`` -> ``<mirror>/debian-security``. Ubuntu mirrors carry the -security suite
    in the archive itself, so the URI stays (untested here).
    """
    uri = mirror_uri.rstrip("/")
    return uri if os_id == "ubuntu" else uri + "-security"


def render_security_sources(uri: str, codename: str, components: Sequence[str],
                            os_id: str) -> str:
    return render_one_line_source(
        uri, [f"{codename}-security"], components, archive_keyring(os_id),
        "Managed by provisioner (hardening role): the security archive (controls.md §1.9).")


def plan_security_sources(output: str, variables: Mapping[str, Any], facts: Facts,
                          show_diff: bool = False) -> Plan:
    """Leave a host that already has a -security source alone, else write ours and refresh."""
    entries, current = read_sources(output)
    present = security_suites(entries)
    if present:
        if current is None:
            return Plan(f"already in the host's apt sources ({present[0]})")
        return Plan(f"removed: the host's own sources now name {present[0]}",
                    action=remove_source_action(SECURITY_SOURCES))
    mirror = main_mirror(entries, facts.os_codename)
    uri = variables["hardening_apt_security_uri"] or (
        security_uri(mirror.uris[0], facts.os_id) if mirror else "")
    if not uri:
        raise Refused("the host's apt sources name no main mirror to derive the security "
                      "archive from: set hardening_apt_security_uri to the security archive's "
                      "URI (or hardening_security_repository_enabled: false)")
    components = variables["hardening_apt_security_components"] or (
        mirror.components if mirror else [])
    content = render_security_sources(uri, facts.os_codename, components, facts.os_id)
    desired = DesiredFile(SECURITY_SOURCES, content.encode(), mode=source_mode(uri))
    return plan_source_file(current, desired, show_diff)


def security_repository_steps(host: Host) -> Iterator[Step]:
    if not host.vars["hardening_security_repository_enabled"]:
        return
    variables, facts, show_diff = host.vars, host.facts, host.show_diff
    old = DEB822_SECURITY_SOURCES
    yield replace(ensure_command_result(  # the probe below is then taken again without it
        host, "deb822 security source of earlier versions gone [controls §1.9]",
        f"if [ -e {old} ]; then echo present; else echo absent; fi", wanted="absent",
        action=remove_source_action(old), reason="removed; the one-line file replaces it"),
        changes_facts=True)

    def decide(probed: Probed) -> Plan:
        return plan_security_sources(probed.output, variables, facts, show_diff)

    yield Step("apt security archive [controls §1.9]",
               probe_sources(SECURITY_SOURCES, with_content=show_diff), decide,
               changes_facts=True)  # the apt sources are facts


def wanted_packages(variables: Mapping[str, Any], facts: Facts) -> list[str]:
    """Every package the enabled features need; kernel-bound ones only outside containers."""
    switches = {
        "hardening_unattended_upgrades_enabled": ["unattended-upgrades"],
        "hardening_pwquality_enabled": ["libpam-pwquality"],
        "hardening_time_sync_enabled": [str(variables["hardening_time_sync_service"])],
        "hardening_process_accounting_enabled": ["acct"],
        "hardening_aide_enabled": ["aide", "aide-common"],
        "hardening_cron_enabled": ["cron"],
    }
    if not facts.is_container:
        switches.update({"hardening_auditd_enabled": ["auditd"],
                         "hardening_apparmor_enabled": ["apparmor"]})
    names = ["sudo"] + [name for switch, packages in switches.items() if variables[switch]
                        for name in packages]
    return list(dict.fromkeys([*names, *variables["hardening_extra_packages"]]))


def package_steps(host: Host) -> Iterator[Step]:
    yield ensure_packages(host, wanted_packages(host.vars, host.facts),
                          host.vars["hardening_absent_packages"],
                          label="packages [controls §1.7, §1.9, §12]")


def rootkit_scanner_steps(host: Host) -> Iterator[Step]:
    """chkrootkit and its daily timer (Lynis HRDN-7230), without the Recommends that would
    bring binutils' assembler and linker (HRDN-7220/7222)."""
    if not host.vars["hardening_rootkit_scanner_enabled"]:
        return
    yield ensure_packages(host, ["chkrootkit"], recommends=False,
                          label="rootkit scanner chkrootkit [controls §12 HRDN-7230]")
    yield ensure_service(host, "chkrootkit.timer", label="chkrootkit daily scan timer")


def update_steps(host: Host) -> Iterator[Step]:
    """Automatic updates and the first run's pending security updates (§1.9). Before the SSH
    and admin steps: those arm the access safeguard, whose revert fires after
    hardening_ssh_safeguard_timeout (120 s) unless a new login proves them at the role's end,
    and unattended-upgrade on a fresh host can take longer than that on its own (163 s
    measured on a loaded sandbox), and may replace openssh-server under an armed revert."""
    variables = host.vars
    if not variables["hardening_unattended_upgrades_enabled"]:
        return
    for name in ("20auto-upgrades", "50unattended-upgrades"):
        yield ensure_template(host, f"/etc/apt/apt.conf.d/{name}",
                              f"etc/apt/apt.conf.d/{name}.j2",
                              label=f"unattended-upgrades {name} [controls §1.9]")
    if variables["hardening_security_updates_first_run"]:
        yield security_updates_step(host)


def service_steps(host: Host) -> Iterator[Step]:
    """Journal, clock, accounting, auditing (§12)."""
    variables, facts = host.vars, host.facts
    if variables["hardening_journald_persistent_enabled"]:
        yield ensure_directory(host, "/etc/systemd/journald.conf.d")
        yield ensure_template(host, "/etc/systemd/journald.conf.d/90-provisioner.conf",
                              "etc/systemd/journald.conf.d/90-provisioner.conf.j2",
                              notify=[JOURNALD_RESTART],
                              label="journal kept on disk [controls §12]")
    if variables["hardening_time_sync_enabled"]:
        unit = f"{variables['hardening_time_sync_service']}.service"
        yield ensure_service(host, unit, enabled=True, running=None if facts.is_container else True,
                             label=f"time sync {unit} [controls §12]")
    if variables["hardening_process_accounting_enabled"]:
        yield ensure_service(host, "acct.service", label="process accounting [controls §12]")
    if variables["hardening_cron_enabled"]:
        yield ensure_service(host, "cron.service", label="cron daemon [controls §1.4]")
    yield from _kernel_bound_services(host)
    if variables["hardening_aide_enabled"]:
        yield ensure_command_result(
            host, "AIDE database initialised [controls §12]",
            "if [ -s /var/lib/aide/aide.db ]; then echo initialised; else echo missing; fi",
            wanted="initialised", action="aideinit --yes --force", reason="initialised")


#: When the first provision installed the host's pending security updates (unattended-upgrades
#: keeps it patched from then on).
SECURITY_UPDATES_STAMP = "/var/lib/provisioner/security-updates-installed"


def security_updates_step(host: Host) -> Step:
    """The security updates a fresh host lacks, installed once, by unattended-upgrade with the
    configuration written just before (security origins only), after the package lists are
    refreshed: what every guide's first `apt upgrade` is for (§1.9, Lynis PKGS-7392)."""
    stamp, suite = SECURITY_UPDATES_STAMP, f"{host.facts.os_codename}-security"
    unreachable = quote(f"apt has no {suite} archive after refreshing its lists (a source that "
                        "cannot be fetched?): no security update was installed")
    action = (f"{apt_command('update')} && {{ apt-cache policy | grep -q 'n={suite}[,]' || "
              f"{{ echo {unreachable} >&2; exit 1; }}; }} && (\n{wait_for_dpkg_lock()}) && "
              "unattended-upgrade && mkdir -p /var/lib/provisioner && "
              f"date -u +%Y-%m-%dT%H:%M:%SZ > {stamp}")
    step = ensure_command_result(
        host, "pending security updates installed [controls §1.9 PKGS-7392]",
        f"if [ -s {stamp} ]; then echo installed; else echo pending; fi",
        wanted="installed", action=action, reason="installed by unattended-upgrade")
    return replace(step, changes_facts=True)  # openssh-server may be among them


def _kernel_bound_services(host: Host) -> Iterator[Step]:
    """auditd and AppArmor need the kernel to themselves: not in containers."""
    if host.facts.is_container:
        return
    if host.vars["hardening_auditd_enabled"]:
        yield ensure_service(host, "auditd.service", label="auditd [controls §1.7, §12]")
    if host.vars["hardening_apparmor_enabled"]:
        # Enabled only: the unit is skipped on kernels booted without AppArmor, and asking for it
        # to run would then report a change on every run.
        yield ensure_service(host, "apparmor.service", running=None,
                             label="AppArmor [controls §12]")
