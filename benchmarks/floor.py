"""The floor: what the work costs through one plain OpenSSH session per host, with no tool at all.

No-op and check scenarios: the floor sends, in one session, exactly the read-only probes provisioner
itself would send for the same roles (built with provisioner's own ``prepare``, the roles'
``steps(host)`` and ``build_batch``), plus the facts script when a template reads facts. No
decision is made inside the timed session; afterwards the runner feeds the output to the steps'
own ``decide`` to prove the host really was converged (a floor that checked nothing would be no
floor).

First converge: a generated shell script doing W's work naively but correctly: every command
runs every time except the package-list refresh, which obeys the same one-hour rule.
"""

from __future__ import annotations

import base64
import functools
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.content.roles import available_roles
from provisioner.content.templates import render_template
from provisioner.facts import FACTS_SCRIPT, Facts, parse_facts
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.loader import load_inventory
from provisioner.ops.cron import render_cron_file
from provisioner.ops.sysctl import render_sysctl_file
from provisioner.run.batch import BatchScript, build_batch, parse_batch
from provisioner.run.engine import RunOptions, prepare
from provisioner.run.session import HostJob, role_steps
from provisioner.step import GroupedProbe, ProbeUnreadable, Step

REMOTE_SHELL = "sudo -n /bin/sh -s"


@dataclass(frozen=True)
class CheckScript:
    """One host's floor script and what is needed to judge its output afterwards."""

    host: str
    batch: BatchScript
    steps: tuple[Step, ...]
    with_facts: bool


def ssh_command(config: HostConfig, control_dir: Path | None = None) -> list[str]:
    """OpenSSH argv for an inventory host: its key, the pinned known_hosts, strict checking;
    with control_dir, through a ControlPersist master kept there between runs."""
    argv = ["ssh", "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={config.ssh.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-p", str(config.port)]
    if control_dir is not None:
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir}/%C",
                 "-o", "ControlPersist=300"]
    if config.ssh.identity_file is not None:
        argv += ["-i", str(config.ssh.identity_file)]
    return [*argv, f"{config.user}@{config.address}", REMOTE_SHELL]


def load_jobs(inventory: Path, role_dirs: Sequence[Path]) -> list[HostJob]:
    loaded = load_inventory(inventory, available_roles(role_dirs))
    return prepare(list(loaded.hosts.values()), RunOptions(role_dirs=tuple(role_dirs)))


def gather_facts_over_ssh(config: HostConfig) -> Facts:
    done = subprocess.run(ssh_command(config), input=FACTS_SCRIPT, capture_output=True,
                          text=True, check=True, timeout=60)
    return parse_facts(done.stdout)


def check_scripts(inventory: Path, role_dirs: Sequence[Path]) -> dict[str, CheckScript]:
    """Per host: provisioner's probes of its roles as one script (facts first when needed)."""
    scripts = {}
    for job in load_jobs(inventory, role_dirs):
        host = Host(job.config, job.variables, functools.partial(gather_facts_over_ssh, job.config),
                    inventory=job.inventory)
        steps = [step for part in role_steps(host, job.roles) for step in part.steps]
        probes: list[str | GroupedProbe] = [step.wire_probe for step in steps]
        if host.facts_gathered:
            probes.insert(0, FACTS_SCRIPT)
        scripts[job.config.name] = CheckScript(job.config.name, build_batch(probes), tuple(steps),
                                               host.facts_gathered)
    return scripts


def pending_changes(script: CheckScript, output: str) -> tuple[int, int]:
    """(steps that would change, steps that could not be judged) from a floor run's output."""
    probes = parse_batch(script.batch, output).probes
    if script.with_facts:
        probes = probes[1:]
    if len(probes) != len(script.steps):
        return 0, len(script.steps)
    changes = failures = 0
    for step, probed in zip(script.steps, probes, strict=True):
        try:
            changes += step.decide(probed).changes
        except ProbeUnreadable:
            failures += 1
    return changes, failures


def _write(path: str, content: str, owner: str, mode: str) -> str:
    encoded = base64.b64encode(content.encode()).decode()
    target = shlex.quote(path)
    return (f"printf '%s' {encoded} | base64 -d > {target}\n"
            f"chown {owner} {target}\nchmod {mode} {target}\n")


def apply_script(variables: Mapping[str, Any], host_name: str, template_dir: Path) -> str:
    """W in plain shell, for a fresh host; ``set -e`` makes any failure the script's failure."""
    return (_packages_part(variables) + _files_part(variables, host_name, template_dir)
            + _system_part(variables) + _access_part(variables)
            + "systemctl reload nginx.service\n")


def _packages_part(variables: Mapping[str, Any]) -> str:
    """Lists refreshed when older than W's limit, then the packages installed."""
    quote = shlex.quote
    stamp = "/var/lib/apt/periodic/update-success-stamp"
    max_age_minutes = int(variables["provbench_apt_cache_max_age"]) // 60
    apt = ("DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 "
           "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold")
    lines = [
        "set -e",
        f"if [ -z \"$(find {stamp} -mmin -{max_age_minutes} 2>/dev/null)\" ]; then",
        f"  {apt} update >/dev/null && mkdir -p {stamp.rsplit('/', 1)[0]} && touch {stamp}",
        "fi",
        f"{apt} install {' '.join(quote(p) for p in variables['provbench_packages'])} >/dev/null",
    ]
    return "\n".join(lines) + "\n"


def _files_part(variables: Mapping[str, Any], host_name: str, template_dir: Path) -> str:
    """The directory and its ten rendered files."""
    directory = shlex.quote(variables["provbench_directory"])
    script = f"mkdir -p {directory} && chown root:root {directory} && chmod 0755 {directory}\n"
    for index in range(int(variables["provbench_file_count"])):
        content = render_template(template_dir, "etc/provbench/file.conf.j2", {
            **variables, "host_name": host_name, "provbench_file_index": index})
        script += _write(f"{variables['provbench_directory']}/file{index}.conf", content,
                         "root:root", "0644")
    return script


def _system_part(variables: Mapping[str, Any]) -> str:
    """Sysctls applied from their drop-in, services running, the cron file."""
    quote = shlex.quote
    header = variables["provbench_header"]
    sysctl_file = variables["provbench_sysctl_file"]
    script = _write(sysctl_file, render_sysctl_file(variables["provbench_sysctls"], header),
                    "root:root", "0644")
    script += f"sysctl -q -p {quote(sysctl_file)}\n"
    units = " ".join(quote(unit) for unit in variables["provbench_services"])
    script += f"systemctl enable --now {units} 2>/dev/null\n"
    return script + _write(f"/etc/cron.d/{variables['provbench_cron_name']}",
                           render_cron_file([variables["provbench_cron_job"]], {}, header),
                           "root:root", "0644")


def _access_part(variables: Mapping[str, Any]) -> str:
    """The deploy user with its key, and the firewall."""
    quote = shlex.quote
    user = variables["provbench_user"]
    script = (f"id {quote(user)} >/dev/null 2>&1 || useradd --create-home --shell "
              f"{quote(variables['provbench_user_shell'])} --user-group {quote(user)}\n")
    script += f"install -d -o {quote(user)} -g {quote(user)} -m 0700 /home/{user}/.ssh\n"
    script += _write(f"/home/{user}/.ssh/authorized_keys",
                     variables["provbench_authorized_key"].strip() + "\n", f"{user}:{user}",
                     "0600")
    script += f"ufw default {quote(variables['provbench_ufw_default_incoming'])} incoming\n"
    for port in variables["provbench_ufw_tcp_ports"]:
        script += f"ufw allow {int(port)}/tcp\n"
    return script + "ufw --force enable\n"
