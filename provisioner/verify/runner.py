"""``invoke verify``: run each role's testinfra spec against the hosts, over OpenSSH.

testinfra's paramiko backend would accept unknown host keys (WarningPolicy), so specs run through
its ssh:// backend with a generated ssh_config that pins the inventory's known_hosts file and
reuses one master connection per host. That master is closed when the specs are done: testinfra
starts it with ControlPersist=60s, so it would otherwise stay logged in to the host for a minute
after verify returned, its socket in a temporary directory already deleted. The specs read the
host's merged variables from a JSON file named by PROVISIONER_VERIFY_VARS (see plugin.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from provisioner.run.session import HostJob
from provisioner.secrets.host_store import HostSecret
from provisioner.secrets.values import Secret


def ssh_config_block(job: HostJob, control_dir: Path) -> str:
    config = job.config
    lines = [f"Host {config.name}", f"  HostName {config.address}", f"  Port {config.port}",
             f"  User {config.user}", f"  UserKnownHostsFile {config.ssh.known_hosts}",
             "  StrictHostKeyChecking yes", "  BatchMode yes", "  ControlMaster auto",
             f"  ControlPath {control_dir}/%C", "  ControlPersist 60s",
             f"  ConnectTimeout {int(config.ssh.connect_timeout)}"]
    if config.ssh.identity_file:
        lines += [f"  IdentityFile {config.ssh.identity_file}", "  IdentitiesOnly yes"]
    if config.ssh.jump_host:
        lines.append(f"  ProxyJump {config.ssh.jump_host}")
    return "\n".join(lines) + "\n"


def _plain(value: object) -> object:
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, HostSecret):  # its value is on the host: a spec reads it there
        return {"secret": f"host:{value.name}"}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def verify_host(job: HostJob, extra_args: Sequence[str] = ()) -> int:
    """Run the specs of the job's roles against its host; returns pytest's exit code."""
    specs = [str(role.spec_path) for role in job.roles if role.spec_path.is_file()]
    if not specs:
        return 0
    with tempfile.TemporaryDirectory(prefix="provisioner-verify-") as work:
        workdir = Path(work)
        (workdir / "ssh_config").write_text(ssh_config_block(job, workdir))
        variables = {key: _plain(value) for key, value in job.variables.items()}
        variables["_login_user"] = job.config.user
        variables["_host_address"] = job.config.address
        vars_file = workdir / "vars.json"
        vars_file.write_text(json.dumps(variables, default=str))
        vars_file.chmod(0o600)
        environment = {**os.environ, "PROVISIONER_VERIFY_VARS": str(vars_file)}
        command = [sys.executable, "-m", "pytest", "-p", "provisioner.verify.plugin",
                   f"--hosts=ssh://{job.config.name}", f"--ssh-config={workdir / 'ssh_config'}",
                   "--sudo", "-q", "--no-header", "-p", "no:cacheprovider",
                   "--rootdir", str(workdir), *extra_args, *specs]
        try:
            return subprocess.run(command, env=environment, check=False).returncode
        finally:
            close_master(workdir / "ssh_config", job.config.name)


def close_master(ssh_config: Path, host_name: str) -> None:
    """Ask the host's OpenSSH master (if one is still up) to exit now instead of persisting."""
    subprocess.run(["ssh", "-F", str(ssh_config), "-O", "exit", host_name],
                   stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=30)
