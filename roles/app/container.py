"""The app's systemd template unit: one container per port, started by ``docker run -d`` and
stopped with the unit, enabled for boot.

The container runs under the Docker daemon, not under the unit's process: a client in the
foreground exits when dockerd restarts (a package upgrade, a daemon.json change), and systemd
then restarted every instance at once (a breaker counted 156 failed requests in 5 s), while
live-restore keeps a detached container serving through the restart. So the unit is a oneshot
that stays active: start removes a leftover container of its name and runs the new one, stop
stops and removes it. Docker restarts a container that crashes (``--restart on-failure``);
its output is in ``docker logs`` (json-file, rotated by daemon.json).

The unit on port P starts the image its slot file names (``IMAGE=`` in slots/P.env, written by
the deploy that starts it), published on 127.0.0.1:P only, as the configured non-root uid, with
the memory and CPU limits, no capabilities, no privilege gain, the environment file and the
secrets directory mounted read-only at /run/secrets. The unit runs the docker client, which
needs only the daemon's socket: the client keeps the systemd hardening of controls.md §11.
"""

from __future__ import annotations

from provisioner.commands import join
from roles.app.layout import Layout
from roles.app.settings import AppSettings
from roles.systemd.units import HARDENING, UnitSpec

DOCKER = "/usr/bin/docker"


def container_arguments(settings: AppSettings) -> list[str]:
    """What every container of the app gets, an instance's and the migration's alike: its
    user, limits, no capabilities or privilege gain, the environment, secrets and volumes."""
    arguments = ["--user", f"{settings.uid}:{settings.gid}", "--memory", settings.memory,
                 "--cpus", settings.cpus, "--security-opt", "no-new-privileges",
                 "--cap-drop", "ALL", "--env-file", Layout(settings.name).container_env]
    if settings.secrets and settings.secrets_as == "files":
        arguments += ["--volume", f"{Layout(settings.name).secrets_dir}:/run/secrets:ro"]
    for volume in settings.volumes:
        arguments += ["--volume", f"{volume.host}:{volume.container}"
                      + (":ro" if volume.read_only else "")]
    return arguments


def run_command(settings: AppSettings) -> str:
    """ExecStart: the container, detached, named after its port (``%i``)."""
    arguments = [DOCKER, "run", "--detach", "--name", f"{settings.name}-%i", "--pull", "never",
                 "--restart", "on-failure:5", *container_arguments(settings),
                 "--publish", f"127.0.0.1:%i:{settings.container_port}",
                 "--label", f"provisioner.app={settings.name}"]
    # ${IMAGE} is systemd's expansion from the slot's EnvironmentFile, not the shell's.
    return join(*arguments) + " ${IMAGE}"


def unit_spec(settings: AppSettings) -> UnitSpec:
    layout = Layout(settings.name)
    return UnitSpec(
        name=layout.unit_template, command=run_command(settings),
        description=f"{settings.name} instance on port %i (app role)", user="root",
        create_user=False, type="oneshot", restart="no",
        after=("docker.service",), wants=("docker.service",),
        hardening=tuple(HARDENING.items()),
        service_options=(
            ("EnvironmentFile", layout.slot_env("%i")),
            # The client would read root's config in /root, which ProtectHome hides (and warn
            # on every start): the unit never pulls, so it needs none.
            ("Environment", f"DOCKER_CONFIG={layout.etc}/docker-client"),
            # A container left by a crash under the same name would stop this one starting.
            ("ExecStartPre", f"-/bin/sh -c '{DOCKER} rm --force {settings.name}-%i "
                             ">/dev/null 2>&1'"),
            ("RemainAfterExit", "yes"),
            ("ExecStop", f"{DOCKER} stop --time {settings.stop_timeout} {settings.name}-%i"),
            ("ExecStopPost", f"-/bin/sh -c '{DOCKER} rm --force {settings.name}-%i "
                             ">/dev/null 2>&1'")))
