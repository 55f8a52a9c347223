"""The app_* variables as one checked AppSettings, refused before contact with the field named.

Everything the app role provisions and every stage of a deploy reads the application from here,
so provision and deploy can never disagree on a port, a path or a limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provisioner.errors import RoleError
from provisioner.secrets.host_store import HostSecret
from provisioner.secrets.values import Secret

NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
IMAGE = re.compile(r"^[a-z0-9][a-z0-9._/-]{0,200}(:[0-9]{1,5}/[a-z0-9][a-z0-9._/-]*)?$")
CONTAINER_USER = re.compile(r"^([0-9]{1,9}):([0-9]{1,9})$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MEMORY = re.compile(r"^[1-9][0-9]*[kmg]$")
HEALTH_PATH = re.compile(r"^/[A-Za-z0-9._~/?=&%-]*$")
VOLUME = re.compile(r"^(/[A-Za-z0-9._/-]+):(/[A-Za-z0-9._/-]+)(:ro)?$")
SOURCES = ("archive", "registry")
SECRETS_AS = ("files", "environment")
#: Where a writable volume's host directory may be: the role makes it the container user's,
#: so it must be a directory of the app's own, never one another program or a login owns
#: (a home directory chowned away locks its user out: sshd's StrictModes).
VOLUME_ROOTS = ("/srv", "/opt", "/data", "/mnt")
#: Names an app may not take: Debian's system accounts and /etc directories of the programs
#: the project installs (the role claims /etc/<app> and the account <app>).
RESERVED_NAMES = frozenset({
    "root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp",
    "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "sshd", "messagebus",
    "postgres", "admin", "provisioner", "ssl", "ssh", "nginx", "docker", "systemd", "default",
    "apt", "cron", "pam", "security", "sudoers", "ufw", "fail2ban", "postgresql", "pgbouncer",
    "letsencrypt", "network", "init", "logrotate", "rsyslog", "dpkg", "alternatives", "ca",
    "containerd", "python3", "perl", "profile", "skel", "opt", "srv", "apps"})
#: Debian's range for the uids and gids of normal accounts (below: system accounts such as
#: www-data; above: reserved, 65534 nobody).
USER_IDS = range(1000, 60000)
#: Ports the host's own services keep: an instance there would fight them.
RESERVED_PORTS = frozenset({22, 80, 443, 5432, 6432})

#: A secret as the role sees it: a host secret by reference, or a controller secret (env:,
#: file:) already revealed to its value (Host.vars); validate_login saw the reference.
SecretValue = Secret | HostSecret | str


@dataclass(frozen=True)
class Volume:
    host: str
    container: str
    read_only: bool


@dataclass(frozen=True)
class AppSettings:
    name: str
    image: str
    source: str
    archive_dir: str
    instances: tuple[int, ...]
    alternate_offset: int
    container_port: int
    environment: tuple[tuple[str, str], ...]
    secrets: tuple[tuple[str, SecretValue], ...]
    secrets_as: str
    health_path: str
    health_timeout: int
    memory: str
    cpus: str
    volumes: tuple[Volume, ...]
    uid: int
    gid: int
    migration_command: str
    backup_host: str
    keep_releases: int
    drain_timeout: int
    stop_timeout: int
    min_free_disk_mb: int

    def ports_of(self, instance: int) -> tuple[int, int]:
        """The instance's two ports: a new version starts on the one not serving."""
        return instance, instance + self.alternate_offset

    def image_of(self, version: str) -> str:
        return f"{self.image}:{version}"

    def secret_file(self, name: str) -> str:
        """The file a secret is given as inside the container (STET's ``*_FILE`` convention:
        DB_PASSWORD -> /run/secrets/db_password, and DB_PASSWORD_FILE names it)."""
        return f"/run/secrets/{name.lower()}"


def read_app(variables: Mapping[str, Any]) -> AppSettings:
    """The app's settings; RoleError naming the variable and what it takes."""
    name = _text(variables, "app_name", NAME, "a short name of lower-case letters, digits and "
                 "'-' starting with a letter (e.g. stet): it names the units, containers and "
                 "directories")
    if name in RESERVED_NAMES or name.startswith(("systemd-", "provisioner-")):
        raise RoleError(f"app_name {name!r} is a system account's or another program's name "
                        f"(the role claims the account {name} and /etc/{name}); choose the "
                        "application's own, e.g. stet.")
    source = _choice(variables, "app_source", SOURCES)
    uid, gid = _container_user(variables)
    instances = _instances(variables)
    settings = AppSettings(
        name=name, image=_text(variables, "app_image", IMAGE, "an image repository such as "
                               "stet-api or 10.0.0.5:5000/stet-api, without a tag (the tag "
                               "is the version)"),
        source=source, archive_dir=str(variables.get("app_archive_dir") or ""),
        instances=instances, alternate_offset=_number(variables, "app_alternate_port_offset",
                                                      1, 60000),
        container_port=_number(variables, "app_container_port", 1, 65535),
        environment=_environment(variables), secrets=_secrets(variables),
        secrets_as=_choice(variables, "app_secrets_as", SECRETS_AS),
        health_path=_text(variables, "app_health_path", HEALTH_PATH, "a path such as /health"),
        health_timeout=_number(variables, "app_health_timeout", 1, 900),
        memory=_text(variables, "app_memory", MEMORY, "a size such as 512m or 2g"),
        cpus=_cpus(variables),
        volumes=_volumes(variables), uid=uid, gid=gid,
        migration_command=str(variables.get("app_migration_command") or ""),
        backup_host=str(variables.get("app_backup_host") or ""),
        keep_releases=_number(variables, "app_keep_releases", 2, 100),
        drain_timeout=_number(variables, "app_drain_timeout", 0, 900),
        stop_timeout=_number(variables, "app_stop_timeout", 1, 300),
        min_free_disk_mb=_number(variables, "app_min_free_disk_mb", 0, 10**7))
    if source == "archive" and not settings.archive_dir.startswith(("/", "~/")):
        raise RoleError(f"app_source is archive but app_archive_dir is "
                        f"{settings.archive_dir!r}: give the directory on this machine "
                        "holding <app_name>-<version>.tar files, absolute or under ~/ "
                        "(e.g. ~/releases/stet).")
    _check_ports(settings)
    return settings


def _cpus(variables: Mapping[str, Any]) -> str:
    """app_cpus as docker reads it: more than 0 (``--cpus 0`` would set no limit at all)."""
    value = variables.get("app_cpus")
    if isinstance(value, int | float) and not isinstance(value, bool) and 0 < value <= 1024:
        return str(value)
    raise RoleError(f"app_cpus is {value!r}; it is a number of CPUs above 0, such as 1 or 0.5.")


def _check_ports(settings: AppSettings) -> None:
    ports = [port for instance in settings.instances for port in settings.ports_of(instance)]
    for port in ports:
        if not 1024 <= port <= 65535:
            raise RoleError(f"app_instances with app_alternate_port_offset "
                            f"{settings.alternate_offset} give port {port}; every instance's "
                            "port and port + offset must be from 1024 to 65535.")
        if port in RESERVED_PORTS:
            raise RoleError(f"app_instances: port {port} (an instance's port or port + "
                            f"app_alternate_port_offset) is one the host's own services use "
                            f"({', '.join(map(str, sorted(RESERVED_PORTS)))}); choose others.")
    twice = sorted({port for port in ports if ports.count(port) > 1})
    if twice:
        raise RoleError(f"app_instances with app_alternate_port_offset "
                        f"{settings.alternate_offset} use port {twice[0]} twice (an instance's "
                        "port + offset is another's port): choose a larger offset.")


def _instances(variables: Mapping[str, Any]) -> tuple[int, ...]:
    value = variables.get("app_instances")
    if not isinstance(value, Sequence) or isinstance(value, str) or not value or \
            not all(isinstance(port, int) and not isinstance(port, bool) for port in value):
        raise RoleError(f"app_instances is {value!r}; it is a list of the instances' host "
                        "ports, e.g. [8000, 8001] (nginx balances over them).")
    if len(set(value)) != len(value):
        raise RoleError(f"app_instances lists a port twice: {list(value)}.")
    return tuple(value)


def _container_user(variables: Mapping[str, Any]) -> tuple[int, int]:
    value = str(variables.get("app_user", ""))
    match = CONTAINER_USER.fullmatch(value)
    if match is None or int(match.group(1)) not in USER_IDS or \
            int(match.group(2)) not in USER_IDS:
        raise RoleError(f"app_user is {value!r}; it is the container's uid:gid as numbers from "
                        f"{USER_IDS.start} to {USER_IDS.stop - 1} (e.g. 10001:10001): the app "
                        "never runs as root or as a system account (www-data is 33), and the "
                        "host account of that uid owns its secrets and volumes.")
    return int(match.group(1)), int(match.group(2))


def _environment(variables: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    value = variables.get("app_environment") or {}
    if not isinstance(value, Mapping):
        raise RoleError("app_environment must be a mapping of NAME: value.")
    pairs = []
    for key, item in value.items():
        if not isinstance(key, str) or not ENV_NAME.fullmatch(key):
            raise RoleError(f"app_environment: {key!r} is not an environment variable name.")
        if isinstance(item, Secret | HostSecret):
            raise RoleError(secret_in_environment(key))
        text = "" if item is None else str(item).lower() if isinstance(item, bool) else str(item)
        if "\n" in text or "\0" in text:
            raise RoleError(f"app_environment: {key} holds a line break; Docker's env file "
                            "takes one line per variable.")
        pairs.append((key, text))
    return tuple(pairs)


def _secrets(variables: Mapping[str, Any]) -> tuple[tuple[str, SecretValue], ...]:
    value = variables.get("app_secrets") or {}
    if not isinstance(value, Mapping):
        raise RoleError("app_secrets must be a mapping of NAME: {secret: ...}.")
    pairs = []
    for key, item in value.items():
        if not isinstance(key, str) or not ENV_NAME.fullmatch(key):
            raise RoleError(f"app_secrets: {key!r} is not an environment variable name.")
        if not isinstance(item, Secret | HostSecret | str) or item == "":
            raise RoleError(f"app_secrets: {key} must be a secret reference, e.g. "
                            "{secret: host:stet_db_password} (generated on the host) or "
                            "{secret: env:STET_API_KEY}.")
        pairs.append((key, item))
    return tuple(pairs)


def secret_in_environment(key: str) -> str:
    return (f"app_environment: {key} is a secret; put secrets in app_secrets, which gives them "
            "to the container as files (or as environment with app_secrets_as: environment) "
            "and never in a unit or a diff.")


def check_references(inventory_vars: Mapping[str, Any]) -> None:
    """The inventory's own values (where a reference is still a Secret): every app_secrets
    value a reference, no secret in app_environment."""
    secrets = inventory_vars.get("app_secrets") or {}
    for key, item in secrets.items() if isinstance(secrets, Mapping) else ():
        if not isinstance(item, Secret | HostSecret):
            raise RoleError(f"app_secrets: {key} is written in the inventory as text (not "
                            "shown); give a reference, e.g. {secret: host:stet_db_password} "
                            "(generated on the host) or {secret: env:STET_API_KEY}.")
    environment = inventory_vars.get("app_environment") or {}
    for key, item in environment.items() if isinstance(environment, Mapping) else ():
        if isinstance(item, Secret | HostSecret):
            raise RoleError(secret_in_environment(key))


def _volumes(variables: Mapping[str, Any]) -> tuple[Volume, ...]:
    value = variables.get("app_volumes") or []
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise RoleError("app_volumes must be a list of /host/path:/container/path[:ro].")
    volumes = []
    for item in value:
        match = VOLUME.fullmatch(str(item))
        if match is None or any(".." in path.split("/") for path in match.group(1, 2)):
            raise RoleError(f"app_volumes: {item!r} is not /host/path:/container/path or "
                            "/host/path:/container/path:ro (absolute paths, no '..').")
        host = match.group(1).rstrip("/")
        writable = not match.group(3)
        if writable and not any(host.startswith(root + "/") for root in VOLUME_ROOTS):
            raise RoleError(f"app_volumes: {item!r} mounts {host} writable; the role makes a "
                            "writable volume's directory the app user's, so it must be one of "
                            f"the app's own under {', '.join(VOLUME_ROOTS)} (e.g. "
                            "/srv/<app>/data); mount anything else with :ro.")
        volumes.append(Volume(host, match.group(2), bool(match.group(3))))
    return tuple(volumes)


def _text(variables: Mapping[str, Any], name: str, pattern: re.Pattern[str], what: str) -> str:
    value = variables.get(name)
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise RoleError(f"{name} is {value!r}; it is {what}.")
    return value


def _choice(variables: Mapping[str, Any], name: str, choices: Sequence[str]) -> str:
    value = variables.get(name)
    if value not in choices:
        raise RoleError(f"{name} is {value!r}; it is one of {', '.join(choices)}.")
    return str(value)


def _number(variables: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = variables.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RoleError(f"{name} is {value!r}; it is a whole number from {low} to {high}.")
    return value
