"""app: what a containerised application needs on its host, and its releases for ``invoke
deploy`` (issue 18; controls.md §5, §11, §13).

Provisioning installs everything but a version: the host account of the container's uid, which
owns the secrets given as files; the container environment (0600); the systemd template unit
``<app>@.service`` (roles/systemd machinery: ``systemd-analyze verify``, daemon-reload only on
change) whose instance is a port; and the nginx upstream's server list, rendered from the live
ports a deploy recorded (layout.py), so a provision never undoes a deploy. No container starts
here: ``invoke deploy --version`` starts them (release.py), one instance at a time.

The role comes after docker and before nginx in the host's roles: nginx's configuration
includes the server list, which must exist before nginx checks it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from provisioner.errors import RoleError
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.view import InventoryView
from provisioner.ops.apt import ensure_packages
from provisioner.ops.files import ensure_absent, ensure_directory, ensure_file, ensure_template
from provisioner.release import Release
from provisioner.step import Handler, Step
from roles.app.accounts import ensure_uid_account
from roles.app.container import unit_spec
from roles.app.instances import guard_step, instances_step, table_step
from roles.app.layout import NGINX_APPS, OWNER, Layout
from roles.app.move import move_program, refresh_action
from roles.app.release import AppRelease
from roles.app.servers import ensure_servers, server_options
from roles.app.settings import AppSettings, check_references, read_app
from roles.nginx.role import READY as NGINX_READY
from roles.nginx.role import reload_handler
from roles.systemd.machinery import restart_handler_name, unit_steps

NGINX_RELOAD = "nginx:reload"
#: The systemd machinery's restart handler of the app's units: here a rolling move of every
#: live instance to the version it runs (move.py), never a restart of all at once.
REFRESH = restart_handler_name(OWNER)


def _reload_when_running() -> Handler:
    """nginx's own reload, skipped while nginx is not there yet (the first run: this role
    comes before nginx, which then starts with the list)."""
    reload = reload_handler(NGINX_RELOAD)
    return Handler(NGINX_RELOAD, f"if {NGINX_READY}; then {reload.action}; fi",
                   ready=f"! ( {NGINX_READY} ) || ( {reload.ready} )",
                   ready_timeout=reload.ready_timeout)


HANDLERS: tuple[Handler, ...] = (Handler(REFRESH, refresh_action()), _reload_when_running())
TEMPLATE_ARGUMENTS = {"etc/app/container.env.j2": {"app", "environment", "secrets",
                                                    "secrets_as"},
                      "etc/app/secret.j2": {"value"}}


def steps(host: Host) -> Iterator[Step]:
    settings = read_app(host.vars)
    layout = Layout(settings.name)
    options = server_options(host.vars, settings.name)
    yield guard_step(settings)
    yield ensure_packages(host, list(host.vars["app_packages"]))
    yield ensure_uid_account(settings.name, settings.uid, settings.gid)
    yield ensure_directory(host, layout.etc, mode=0o750)
    yield ensure_template(host, layout.container_env, "etc/app/container.env.j2", mode=0o600,
                          notify=[REFRESH], label=f"environment {layout.container_env} of "
                          f"{settings.name}'s containers", app=settings.name,
                          environment=settings.environment, secrets=settings.secrets,
                          secrets_as=settings.secrets_as)
    yield from secret_steps(host, settings)
    yield from volume_steps(host, settings)
    for directory in (layout.state, layout.live_dir, layout.slots_dir, layout.releases_dir):
        yield ensure_directory(host, directory, mode=0o700)
    yield table_step(settings, REFRESH)
    yield ensure_file(host, layout.move_program, move_program(settings, options), mode=0o700,
                      notify=[REFRESH], label=f"program {layout.move_program} (moves an "
                      "instance to a version: deploy, rollback, a changed configuration)")
    yield from unit_steps(host, [unit_spec(settings)], OWNER)
    yield ensure_directory(host, NGINX_APPS, mode=0o755)
    yield ensure_servers(settings, options, [NGINX_RELOAD])
    yield instances_step(settings)


def secret_steps(host: Host, settings: AppSettings) -> Iterator[Step]:
    """Each secret as a file only the container's uid reads, when given as files."""
    layout = Layout(settings.name)
    if settings.secrets_as != "files" or not settings.secrets:
        yield ensure_absent(host, layout.secrets_dir)
        return
    yield ensure_directory(host, layout.secrets_dir, owner=settings.name, group=settings.name,
                           mode=0o500)
    for name, value in settings.secrets:
        path = f"{layout.secrets_dir}/{name.lower()}"
        yield ensure_template(host, path, "etc/app/secret.j2", owner=settings.name,
                              group=settings.name, mode=0o400, value=value, notify=[REFRESH],
                              label=f"secret file {path} (/run/secrets/{name.lower()})")


def volume_steps(host: Host, settings: AppSettings) -> Iterator[Step]:
    """A writable volume's host directory, owned by the container's uid; a read-only one is
    mounted as it is (it may be anyone's, and stays so)."""
    for volume in settings.volumes:
        if not volume.read_only:
            yield ensure_directory(host, volume.host, owner=settings.name, group=settings.name,
                                   mode=0o750)


def release(host: Host) -> Release:
    """The app's releases for ``invoke deploy`` (provisioner/release.py)."""
    settings = read_app(host.vars)
    archive_dir = None
    if settings.source == "archive":
        archive_dir = Path(settings.archive_dir).expanduser()
    return AppRelease(settings, server_options(host.vars, settings.name), archive_dir)


def validate(variables: Mapping[str, Any]) -> None:
    read_app(variables)


def validate_login(config: HostConfig, variables: Mapping[str, Any]) -> None:
    """Refuse a secret written in the inventory as text, or one in app_environment. Not about
    the login: the one hook that sees the inventory's own values, where a reference is still
    a Secret (by validate's time it is its value)."""
    check_references(config.vars)


def validate_inventory(variables: Mapping[str, Any], inventory: InventoryView) -> None:
    """The host runs docker before app and nginx after it, with an upstream taking its servers
    from this app: without them nothing would run the containers or send them traffic."""
    settings = read_app(variables)
    peer = inventory.host(variables.get("host_name", ""))
    if peer is None:
        return
    roles = list(peer.roles)
    mine = roles.index(OWNER) if OWNER in roles else -1
    if "docker" not in roles[:mine]:
        raise RoleError(f"host {peer.name}: the app role needs docker before it in the roles "
                        f"({', '.join(roles)}): docker runs the app's containers.")
    if "nginx" not in roles[mine + 1:]:
        raise RoleError(f"host {peer.name}: the app role needs nginx after it in the roles "
                        f"({', '.join(roles)}): a deploy moves each instance's traffic in nginx, "
                        "whose configuration includes the server list this role writes.")
    server_options(variables, settings.name)
    check_backup_host(settings, inventory)


def check_backup_host(settings: AppSettings, inventory: InventoryView) -> None:
    """app_backup_host must be a host of the inventory with the backups role: the deploy runs
    its backup before the migration, and a name that does not back anything up would let the
    migration run unprotected."""
    if not settings.backup_host:
        return
    peer = inventory.host(settings.backup_host)
    if peer is None or "backups" not in peer.roles:
        what = "is not a host of the inventory" if peer is None else \
            f"has no backups role (its roles: {', '.join(peer.roles)})"
        raise RoleError(f"app_backup_host {settings.backup_host!r} {what}; it names the "
                        "database host whose backups role backs up before the migration, "
                        "or is empty.")
    if not settings.migration_command:
        raise RoleError("app_backup_host is set but app_migration_command is empty: the backup "
                        "is taken before a migration, and there is none.")
