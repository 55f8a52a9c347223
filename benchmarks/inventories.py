"""The same sandbox machines described for each tool: provisioner, pyinfra and Ansible inventories.

Every tool logs in as the sandbox's admin user with the sandbox key, checks host keys against the
sandbox's known_hosts file (strictly), and becomes root through sudo.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from provisioner import sandbox
from provisioner.sandbox import Machine
from provisioner.sandbox.acme import AcmeServer

#: The controller's address on the sandbox bridge: exempt from SSH rate limits and bans in the
#: full-stack scenario, which opens many connections in a row.
CONTROLLER_ADDRESS = "10.77.0.1"
SSH_OPTIONS = (f"-o UserKnownHostsFile={sandbox.KNOWN_HOSTS_PATH} -o GlobalKnownHostsFile=/dev/null"
               " -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes")


def workload_inventory(machines: Sequence[Machine], path: Path) -> Path:
    """``sandbox.write_inventory``'s file with one group whose only role is provbench."""
    sandbox.write_inventory(machines, path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["defaults"]["vars"] = {}
    data["groups"] = {"provbench": {"roles": ["provbench"]}}
    for host in data["hosts"].values():
        host["groups"] = ["provbench"]
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


#: The data tier on every stack host, as the STET guide's database host has it: PostgreSQL tuned
#: for a web workload with a quarter of the RAM, one database and its owner role whose password
#: is a host secret, PgBouncer in front, nightly dumps kept 7 daily / 4 weekly.
DATA_TIER_VARS = {
    "host_secrets": {"app_db_password": {"kind": "password", "length": 32}},
    "postgres_memory_share": 0.25,
    "postgres_pool_size": 25,
    "postgres_roles": [{"name": "app", "password": {"secret": "host:app_db_password"}}],
    "postgres_databases": [{"name": "app", "owner": "app", "extensions": ["pgcrypto"]}],
    "backups_keep_daily": 7,
    "backups_keep_weekly": 4,
}
DATA_TIER_ROLES = ["postgres", "pgbouncer", "backups"]


#: The web tier on every stack host, as the STET guide's API host has it: nginx in front of two
#: instances (least_conn, max_fails 3 / 30 s), a per-IP rate limit on /api/, /health unlogged,
#: 10 MB bodies, and a certificate certbot gets from the stack's ACME server (Pebble).
WEB_TIER_ROLES = ["nginx", "certbot"]

#: The application tier: Docker (forwarding on, which hardening must agree to) and the app role
#: (roles/app) with the test app's image (tests/integration/app_images.py) in two instances,
#: 8000 and 8001, which `invoke deploy` moves (each to port + 10000 and back) behind nginx's
#: upstream "api". Docker comes before app and app before nginx (app's validate_inventory and
#: nginx's check_app_upstreams refuse any other order).
APP_TIER_ROLES = ["docker", "app"]
APP_NAME = "testapp"
#: The two versions every deploy alternates between (their archives are written by the runner).
APP_VERSIONS = ("v1", "v2")


def app_tier_vars(archive_dir: Path) -> dict[str, object]:
    """The app role's variables as tests/integration/test_deploy.py has them; versions come from
    archive_dir/testapp-<version>.tar (written by app_images.build_image_archive)."""
    from tests.integration.app_images import IMAGE

    return {
        "hardening_ip_forward": True,
        "app_name": APP_NAME, "app_image": IMAGE, "app_source": "archive",
        "app_archive_dir": str(archive_dir), "app_instances": [8000, 8001],
        "app_container_port": 8080, "app_user": "10001:10001",
        "app_environment": {"GREETING": "hello"}, "app_health_timeout": 8,
        "app_drain_timeout": 5, "app_keep_releases": 2,
    }


def web_tier_vars(acme: AcmeServer) -> dict[str, object]:
    return {
        "ufw_rules": [{"port": 80, "proto": "tcp"}, {"port": 443, "proto": "tcp"}],
        "nginx_upstreams": [{"name": "api", "app": APP_NAME, "balance": "least_conn",
                             "max_fails": 3, "fail_timeout": "30s"}],
        "nginx_rate_limits": [{"zone": "api", "rate": "10r/s"}],
        "certbot_email": "ops@example.org",
        "certbot_server": acme.directory_url,
        "certbot_server_ca": acme.api_ca_pem,
    }


def site_name(machine: Machine) -> str:
    return f"{machine.name}.bench.test"


def web_site(machine: Machine) -> dict[str, object]:
    return {"name": "api", "server_names": [site_name(machine)], "certificate": "acme",
            "client_max_body_size": "10m", "health_path": "/health",
            "locations": [{"path": "/api/", "upstream": "api",
                           "rate_limit": {"zone": "api", "burst": 20, "nodelay": True}},
                          {"path": "/", "upstream": "api"}]}


def stack_inventory(machines: Sequence[Machine], path: Path, acme: AcmeServer,
                    archive_dir: Path) -> Path:
    """``sandbox.write_inventory``'s file (hardening, ufw, fail2ban) with the data tier's roles
    (DATA_TIER_VARS), the app tier's (app_tier_vars, versions from ``archive_dir``) and the web
    tier's (one acme site per host, from ``acme``) after them, in that order (docker, app,
    nginx), the controller exempt from SSH rate limits and bans."""
    sandbox.write_inventory(machines, path)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    data["defaults"]["vars"].update({"ufw_ssh_unlimited_sources": [CONTROLLER_ADDRESS],
                                     "fail2ban_ignoreip": [CONTROLLER_ADDRESS],
                                     **DATA_TIER_VARS, **web_tier_vars(acme),
                                     **app_tier_vars(archive_dir)})
    data["groups"]["stack"] = {"roles": [*DATA_TIER_ROLES, *APP_TIER_ROLES, *WEB_TIER_ROLES]}
    by_name = {machine.name: machine for machine in machines}
    for name, host in data["hosts"].items():
        host["groups"] = [*host["groups"], "stack"]
        host["vars"] = {**host.get("vars", {}), "nginx_sites": [web_site(by_name[name])]}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def pyinfra_inventory(machines: Sequence[Machine], path: Path) -> Path:
    """An inventory.py: one host per machine with its SSH settings as host data."""
    lines = ["# Written by the benchmark runner.", "hosts = ["]
    for machine in machines:
        data = {"ssh_hostname": machine.address, "ssh_user": "admin",
                "ssh_key": str(sandbox.KEY_PATH),
                "ssh_known_hosts_file": str(sandbox.KNOWN_HOSTS_PATH),
                "ssh_strict_host_key_checking": "yes"}
        lines.append(f"    ({machine.name!r}, {data!r}),")
    lines.append("]")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def ansible_inventory(machines: Sequence[Machine], path: Path, ssh_wrapper: Path,
                      sftp_wrapper: Path, scp_wrapper: Path) -> Path:
    """A YAML inventory: group provbench, sandbox key and known_hosts, counting ssh wrappers."""
    data = {"provbench": {
        "hosts": {machine.name: {"ansible_host": machine.address} for machine in machines},
        "vars": {"ansible_user": "admin",
                 "ansible_ssh_private_key_file": str(sandbox.KEY_PATH),
                 "ansible_ssh_common_args": SSH_OPTIONS,
                 "ansible_ssh_executable": str(ssh_wrapper),
                 "ansible_sftp_executable": str(sftp_wrapper),
                 "ansible_scp_executable": str(scp_wrapper)},
    }}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def counting_wrapper(path: Path, program: str, log: Path) -> Path:
    """A tiny sh script that logs each invocation of program, then becomes it (exec)."""
    path.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{log}'\nexec {program} \"$@\"\n",
                    encoding="utf-8")
    path.chmod(0o755)
    return path


def without_kept_logins(inventory: Path, path: Path) -> Path:
    """The project's inventory with ``ssh.control_persist: 0``: a new login every run."""
    data = yaml.safe_load(inventory.read_text(encoding="utf-8"))
    data.setdefault("defaults", {}).setdefault("ssh", {})["control_persist"] = 0
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path
