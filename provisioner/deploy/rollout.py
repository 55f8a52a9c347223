"""Moving the chosen hosts to a version, or back, without a failed request.

1. Preflight on every host before touching any (one read-only round trip each): the host can
   take the version (provisioned, Docker answering, disk space, no move still running) and
   the version exists (its image is on the host, its archive here, or the registry has it).
   Any problem on any host: nothing changes anywhere, exit 1, every problem said.
2. The deploy lock on every host (lock.py); one held by another deploy: the locks taken are
   given back, nothing else changes.
3. Host by host (``batch`` at a time): the archive sent when the host lacks the image, the
   version prepared (loaded or pulled), and on the first host, once, the database backup and
   the migration with the new version; then instance by instance the role's move.
4. A move that fails: every instance this deploy already switched, on any host, is moved back
   to the version it ran, by the same move; the failing move's reason and logs are shown, and
   the deploy exits 1 naming the host and instance.
5. Each touched host records the result in its history, prunes releases beyond its keep count
   (never the serving or the previous one) and gives its lock back.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from provisioner.commands import quote
from provisioner.deploy import history, lock
from provisioner.errors import ProvisionerError
from provisioner.release import (
    HISTORY_FILE,
    LOCK_FILE,
    Artifact,
    InstanceState,
    Preflight,
    Release,
)
from provisioner.run.session import HostJob, HostSession, host_session

#: Hears what the deploy says: (text, True when it is an error).
Show = Callable[[str, bool], None]
#: Bytes of an archive sent per round trip (base64 in the script: about 5.3 MB).
CHUNK = 4 * 1024 * 1024
#: What a deploy that lost its host or was interrupted says last.
CARRIES_ON = ("a move already started carries on on its host; invoke deploy.status shows where "
              "each instance stands, and the next deploy or rollback takes it from there.")
_STATES = "==provisioner-states=="
_HISTORY = "==provisioner-history=="


@dataclass(frozen=True)
class Target:
    """One host's part: its job and the release its role ships."""

    job: HostJob
    release: Release

    @property
    def name(self) -> str:
        return self.job.config.name


@dataclass(frozen=True)
class Request:
    version: str
    action: str = "deploy"
    who: str = ""
    message: str = ""
    batch: int = 1
    #: Runs the database backup on the named host before the migration; 0 when it worked.
    backup: Callable[[str], int] | None = None


@dataclass
class HostState:
    """What the preflight read on one host, and what this deploy did there."""

    target: Target
    session: HostSession
    preflight: Preflight
    states: list[InstanceState]
    history: list[history.Entry]
    token: str = ""
    switched: list[tuple[str, str]] = field(default_factory=list)
    touched: bool = False

    @property
    def current_version(self) -> str:
        versions = [state.version for state in self.states if state.version]
        return versions[0] if versions else ""


def lock_path(release: Release) -> str:
    return f"{release.state_dir}/{LOCK_FILE}"


def history_path(release: Release) -> str:
    return f"{release.state_dir}/{HISTORY_FILE}"


class DeployFailed(ProvisionerError):
    """The deploy stopped (a move failed, a backup, a migration); what it said was shown."""


def deploy(targets: Sequence[Target], request: Request, show: Show) -> int:
    """The whole deploy (module docstring); 0 when every instance serves the version."""
    with ExitStack() as stack:
        try:
            hosts = [read_host(target, stack.enter_context(host_session(target.job, check=True)),
                               request.version) for target in targets]
        except ProvisionerError as error:  # a host unreachable, or lost before its preflight
            show(f"{error} Nothing was changed on any host.", True)
            return 1
        return _deploy_read_hosts(hosts, request, show)


def _deploy_read_hosts(hosts: list[HostState], request: Request, show: Show) -> int:
    problems = [f"{host.target.name}: {problem}" for host in hosts
                for problem in host_problems(host, request.version)]
    if problems:
        show("\n".join(problems) + f"\nNothing was changed on any host: the {request.action} of "
             f"{request.version} did not start.", True)
        return 1
    started = time.monotonic()
    if not take_locks(hosts, request, show):
        return 1
    try:
        run_batches(hosts, request, show)
    except DeployFailed:
        rollback_switched(hosts, show)
        finish(hosts, request, started, "rolled back", show)
        return 1
    except ProvisionerError as error:  # the connection died or timed out mid-deploy
        show(f"{error}\n{CARRIES_ON.capitalize()}", True)
        finish(hosts, request, started, "failed", show)
        return 1
    except KeyboardInterrupt:
        show(f"{request.action} interrupted: {CARRIES_ON}", True)
        finish(hosts, request, started, "interrupted", show)
        return 1
    finish(hosts, request, started, "ok", show)
    show(f"{request.action} of {request.version} done on {', '.join(h.target.name for h in hosts)}"
         f" in {time.monotonic() - started:.1f} s.", False)
    return 0


def read_host(target: Target, session: HostSession, version: str) -> HostState:
    """The preflight, the instances' states and the history, in one read-only round trip."""
    release = target.release
    script = (f"{release.preflight(version)}\necho {_STATES}\n{release.states()}\n"
              f"echo {_HISTORY}\n{history.read(history_path(release))}")
    return _parse_host(target, session, session.run_script(script).stdout)


def _parse_host(target: Target, session: HostSession, output: str) -> HostState:
    checks, _, rest = output.partition(_STATES + "\n")
    states, _, entries = rest.partition(_HISTORY + "\n")
    release = target.release
    return HostState(target, session, release.parse_preflight(checks),
                     release.parse_states(states), history.parse(entries))


def host_problems(host: HostState, version: str) -> list[str]:
    """Why this host cannot take the version: the host's own problems, and a version whose
    image it lacks and whose archive is not here."""
    problems = list(host.preflight.problems)
    artifact = host.target.release.artifact(version)
    if not host.preflight.image_present and artifact is not None and \
            not artifact.local.is_file():
        problems.append(f"version {version} of {host.target.release.name} does not exist: the "
                        f"host has no image of it and there is no archive {artifact.local}")
    return problems


def lock_fields(request: Request, token: str) -> dict[str, str]:
    return {"token": token, "action": request.action, "version": request.version,
            "who": request.who, "since": _now(), "controller": socket.gethostname(),
            "pid": str(os.getpid()), "message": request.message}


def take_locks(hosts: list[HostState], request: Request, show: Show) -> bool:
    """Every host's deploy lock, or none: a held one gives back those taken and says who."""
    token = secrets.token_hex(8)
    fields = lock_fields(request, token)
    for index, host in enumerate(hosts):
        path = lock_path(host.target.release)
        result = host.session.run_script(lock.acquire(path, fields))
        if result.exit_code == lock.HELD:
            record = lock.parse_record(result.stdout)
            if record.holder_is_gone() and record.fields.get("token"):
                show(f"{host.target.name}: taking over the lock of {record.describe()}: that "
                     "process is gone.", True)
                result = host.session.run_script(
                    lock.acquire(path, fields, replace_token=record.fields["token"]))
            else:
                release_locks(hosts[:index], token)
                show(f"{host.target.name}: another deploy holds the lock: {record.describe()}. "
                     "Nothing was changed. Wait for it, or if it is gone, run invoke deploy "
                     f"--force-unlock --host {host.target.name}.", True)
                return False
        if result.exit_code != 0:
            release_locks(hosts[:index], token)
            show(f"{host.target.name}: could not take the deploy lock: "
                 f"{(result.stderr or result.stdout).strip()}", True)
            return False
        host.token = token
    return True


def release_locks(hosts: Sequence[HostState], token: str) -> None:
    for host in hosts:
        host.session.run_script(lock.release(lock_path(host.target.release),
                                             token))


def batches(hosts: list[HostState], size: int) -> Iterator[list[HostState]]:
    for start in range(0, len(hosts), max(size, 1)):
        yield hosts[start:start + max(size, 1)]


def run_batches(hosts: list[HostState], request: Request, show: Show) -> None:
    """The first host's version prepared and the migration run once; then the hosts a batch
    at a time, a batch's hosts side by side, each moving its instances one after another. A
    batch whose host failed lets its other hosts finish their moves, then the deploy stops."""
    first = hosts[0]
    send_and_prepare(first, request.version, show)
    backup_and_migrate(first, request, show)
    for batch in batches(hosts, request.batch):
        if len(batch) == 1:
            move_instances(batch[0], request, show)
            continue
        with ThreadPoolExecutor(max_workers=len(batch)) as pool:
            futures = [pool.submit(move_instances, host, request, show) for host in batch]
        failures = [error for future in futures if (error := future.exception()) is not None]
        if failures:
            raise failures[0]


def move_instances(host: HostState, request: Request, show: Show) -> None:
    """Each instance of the host to the version, one after another (the version prepared
    there first, unless it was)."""
    release, name = host.target.release, host.target.name
    if not host.touched:
        send_and_prepare(host, request.version, show)
    for instance in release.instances:
        state = next((state for state in host.states if state.instance == instance), None)
        before = state.version if state else ""
        if state is not None and state.version == request.version and state.healthy:
            show(f"{name}: instance {instance}: already serves {request.version}, healthy",
                 False)
            continue
        result = host.session.run_script(release.move(instance, request.version),
                                         timeout=release.move_timeout)
        output = (result.stdout + result.stderr).rstrip("\n")
        if result.exit_code != 0:
            show(f"{name}: {output}", True)
            raise DeployFailed(f"{name}: instance {instance} did not take {request.version}")
        show(f"{name}: {_last_line_saying(output, instance)}", False)
        host.switched.append((instance, before))


def _last_line_saying(output: str, instance: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith(f"instance {instance}:")]
    return lines[-1] if lines else output.splitlines()[-1] if output else f"instance {instance}"


def send_and_prepare(host: HostState, version: str, show: Show) -> None:
    release = host.target.release
    host.touched = True
    artifact = release.artifact(version)
    send = ""
    if artifact is not None and not host.preflight.image_present:
        send = upload(host, artifact, show)
    result = host.session.run_script(send + release.prepare(version), timeout=600)
    if result.exit_code != 0:
        show(f"{host.target.name}: version {version} could not be prepared: "
             f"{(result.stderr or result.stdout).strip()}", True)
        raise DeployFailed(f"{host.target.name}: prepare failed")


def upload(host: HostState, artifact: Artifact, show: Show) -> str:
    """Send the archive unless the host has these bytes already; all chunks but the last go
    in round trips of their own, the last one is returned to go with the prepare script."""
    data = artifact.local.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if host.preflight.remote_archive_sha256 == digest:
        return ""
    part = quote(artifact.remote + ".part")
    directory = quote(str(Path(artifact.remote).parent))
    chunks = [data[start:start + CHUNK] for start in range(0, len(data), CHUNK)] or [b""]
    show(f"{host.target.name}: sending {artifact.local.name} ({len(data) / 1e6:.1f} MB)", False)
    scripts = [f"printf '%s' '{base64.b64encode(chunk).decode()}' | base64 -d >> {part} || exit 1\n"
               for chunk in chunks]
    scripts[0] = f"( umask 077 && mkdir -p {directory} ) && : > {part} || exit 1\n" + scripts[0]
    for script in scripts[:-1]:
        result = host.session.run_script(script, timeout=600)
        if result.exit_code != 0:
            show(f"{host.target.name}: sending the archive failed: {result.stderr.strip()}", True)
            raise DeployFailed(f"{host.target.name}: upload failed")
    return (scripts[-1] + f"[ \"$(sha256sum < {part} | cut -c1-64)\" = {digest} ] || "
            f"{{ rm -f {part}; echo 'the archive arrived damaged' >&2; exit 1; }}\n"
            f"mv {part} {quote(artifact.remote)} || exit 1\n")


def backup_and_migrate(host: HostState, request: Request, show: Show) -> None:
    """The backup (when the release names a backup host), then the migration, once."""
    release = host.target.release
    script = release.migration(request.version)
    if script is None:
        return
    if release.backup_host and request.backup is not None:
        show(f"backing up the database on {release.backup_host} before the migration", False)
        if request.backup(release.backup_host) != 0:
            show(f"the backup on {release.backup_host} failed: the migration did not run and "
                 "no instance moved.", True)
            raise DeployFailed("backup failed")
    show(f"{host.target.name}: running the migration with {request.version}", False)
    result = host.session.run_script(script, timeout=3600)
    if result.exit_code != 0:
        show(f"{host.target.name}: the migration failed (exit {result.exit_code}); no instance "
             f"moved:\n{(result.stdout + result.stderr).strip()[-2000:]}", True)
        raise DeployFailed("migration failed")


def rollback_switched(hosts: list[HostState], show: Show) -> None:
    """Every instance switched by this deploy back to what it ran, newest first."""
    for host in reversed(hosts):
        release = host.target.release
        for instance, before in reversed(host.switched):
            if not before:
                continue
            result = host.session.run_script(release.move(instance, before),
                                             timeout=release.move_timeout)
            output = (result.stdout + result.stderr).rstrip("\n")
            if result.exit_code == 0:
                show(f"{host.target.name}: rolled back: {_last_line_saying(output, instance)}",
                     False)
            else:
                show(f"{host.target.name}: instance {instance} could not go back to {before}:"
                     f"\n{output}", True)


def finish(hosts: list[HostState], request: Request, started: float, result: str,
           show: Show) -> None:
    """History, pruning and the lock's release on each host the deploy locked."""
    duration = round(time.monotonic() - started, 1)
    for host in hosts:
        if not host.token:
            continue
        release = host.target.release
        script = lock.release(lock_path(release), host.token)
        if host.touched:
            entry = history.Entry(request.action, request.version, host.current_version,
                                  request.who, _now(), duration, result, request.message)
            # A version that was rolled back goes too (its image and archive), unless an
            # instance still runs it: docker keeps an image a container uses.
            kept = kept_versions(host, request.version if result == "ok" else
                                 host.current_version)
            prune = release.prune(kept) + "\n" if result in ("ok", "rolled back") else ""
            script = history.append(history_path(release), entry) + "\n" + prune + script
        try:
            host.session.run_script(script)
        except ProvisionerError as error:
            show(f"{host.target.name}: could not record the {request.action}: {error}", True)


def kept_versions(host: HostState, version: str) -> list[str]:
    """The new version, the one it replaced and the latest successful ones, up to the keep
    count."""
    newest = [version, host.current_version] + [entry.version for entry in
                                                 reversed(host.history) if entry.result == "ok"]
    unique = list(dict.fromkeys(v for v in newest if v))
    return unique[:max(host.target.release.keep_releases, 2)]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
