"""postgres: Debian's PostgreSQL, tuned from the host's facts, with the inventory's objects.

Implements controls.md §6: the distribution's server (its major version read from the host),
Debian's cluster layout, every setting of ours in conf.d/50-provisioner.conf (PGTune @7caef27c
from RAM x postgres_memory_share, CPUs and disk, STET's logging set, the inventory's overrides)
and pg_hba.conf from the inventory (peer locally, SCRAM over TCP, remote access only from named
groups and networks), both checked by the server binary before they go live (cluster.py); then
roles with SCRAM passwords, databases, extensions and grants (objects.py), and a nightly
VACUUM ANALYZE.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import partial
from typing import Any

from provisioner.host import Host
from provisioner.ops.apt import ensure_packages
from provisioner.ops.cron import ensure_cron_file
from provisioner.ops.files import ensure_absent
from provisioner.ops.systemd import ensure_service
from provisioner.step import Step
from roles.postgres import cluster, objects, validation
from roles.postgres.hba import listen_addresses, remote_hosts, render_hba
from roles.postgres.settings import check_fits_memory, desired_settings

HANDLERS = cluster.HANDLERS
MAINTENANCE_CRON = "postgres-maintenance"
validate = validation.validate
validate_inventory = validation.validate_inventory
validate_login = validation.validate_login


def settings_for(host: Host) -> partial[dict[str, str]]:
    """The drop-in's settings as a function of the major version the probe reads."""
    listen = listen_addresses(host.vars, host.config.address)
    return partial(_settings, host.vars, host, listen)


def _settings(variables: Mapping[str, Any], host: Host, listen: list[str],
              version: int) -> dict[str, str]:
    return desired_settings(variables, host.facts, version, listen)


def setting_names(host: Host) -> list[str]:
    """Every name the drop-in may hold, whichever version the host has (PGTune's set differs
    from 18 on)."""
    compute = settings_for(host)
    return sorted(set(compute(15)) | set(compute(18)))


def steps(host: Host) -> Iterator[Step]:
    variables = host.vars
    check_fits_memory(variables, host.facts.memory_bytes)
    yield ensure_packages(host, variables["postgres_packages"],
                          label="packages " + " ".join(variables["postgres_packages"])
                          + " [controls §6.2]")
    yield cluster.ensure_interrupted_change_undone()
    applying = cluster.Applying()
    hba = render_hba(remote_hosts(variables, host.inventory),
                     variables["postgres_remote_networks"])
    yield cluster.ensure_cluster_config(host, settings_for(host), hba, applying)
    yield ensure_service(host, "postgresql.service", running=None,
                         label="service postgresql enabled at boot")
    yield cluster.ensure_cluster_running(host)
    yield cluster.ensure_settings_in_effect(host, settings_for(host), setting_names(host),
                                            applying)
    yield from object_steps(host)
    yield from maintenance_steps(host)


def object_steps(host: Host) -> Iterator[Step]:
    """Roles first (databases name their owners), then databases, their extensions, grants."""
    variables = host.vars
    if variables["postgres_roles"]:
        yield objects.ensure_roles(host, variables["postgres_roles"])
    if variables["postgres_databases"]:
        yield objects.ensure_databases(host, variables["postgres_databases"])
    for database in variables["postgres_databases"]:
        if database.get("extensions"):
            yield objects.ensure_extensions(host, database["name"], database["extensions"])
    grants = variables["postgres_grants"]
    database_grants = [grant for grant in grants if grant.get("schema") is None]
    if database_grants:
        yield objects.ensure_database_grants(host, database_grants)
    by_database: dict[str, list[Mapping[str, Any]]] = {}
    for grant in grants:
        if grant.get("schema") is not None:
            by_database.setdefault(grant["database"], []).append(grant)
    for database, wanted in by_database.items():
        yield objects.ensure_schema_grants(host, database, wanted)


def maintenance_steps(host: Host) -> Iterator[Step]:
    """VACUUM ANALYZE of each managed database at the schedule, as postgres, from cron.d
    (controls §10: a name without dots, root-owned, newline-terminated), with cron itself
    installed and running: images without it (the sandbox's, minimal cloud images) would
    otherwise hold a job nothing ever runs."""
    variables = host.vars
    databases = [str(database["name"]) for database in variables["postgres_databases"]]
    if not variables["postgres_maintenance"] or not databases:
        yield ensure_absent(host, f"/etc/cron.d/{MAINTENANCE_CRON}",
                            label=f"cron.d {MAINTENANCE_CRON} absent")
        return
    yield ensure_packages(host, ["cron"], label="package cron (runs the maintenance job)")
    yield ensure_service(host, "cron.service")
    schedule, port = variables["postgres_maintenance_schedule"], variables["postgres_port"]
    jobs = [f"{schedule} postgres /usr/bin/vacuumdb --port {port} --analyze --quiet "
            f"--dbname {name}" for name in databases]
    yield ensure_cron_file(host, MAINTENANCE_CRON, jobs,
                           header="VACUUM ANALYZE of the managed databases (role postgres)",
                           label=f"cron.d {MAINTENANCE_CRON} [controls §10]")
