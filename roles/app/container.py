"""The app's systemd template unit: one container per port, run by ``docker run`` in the
foreground so systemd supervises it (restart on failure, journal, stop on ``systemctl stop``).

The unit on port P starts the image its slot file names (``IMAGE=`` in slots/P.env, written by
the deploy that starts it), published on 127.0.0.1:P only, as the configured non-root uid, with
the memory and CPU limits, no capabilities, no privilege gain, the environment file and the
secrets directory mounted read-only at /run/secrets. The unit runs the docker client, which
needs only the daemon's socket: the client keeps the systemd hardening of controls.md §11.
"""

from __future__ import annotations

from provisioner.commands import join
from roles.app.layout import Layout
from roles.app.release import volume_arguments
from roles.app.settings import AppSettings
from roles.systemd.units import HARDENING, UnitSpec

DOCKER = "/usr/bin/docker"


def run_command(settings: AppSettings) -> str:
    """ExecStart: the container in the foreground, named after its port (``%i``)."""
    layout = Layout(settings.name)
    arguments = [DOCKER, "run", "--rm", "--name", f"{settings.name}-%i", "--pull", "never",
                 "--user", f"{settings.uid}:{settings.gid}", "--memory", settings.memory,
                 "--cpus", settings.cpus, "--security-opt", "no-new-privileges",
                 "--cap-drop", "ALL", "--publish", f"127.0.0.1:%i:{settings.container_port}",
                 "--env-file", layout.container_env, "--label", f"provisioner.app={settings.name}"]
    arguments += volume_arguments(settings)
    # ${IMAGE} is systemd's expansion from the slot's EnvironmentFile, not the shell's.
    return join(*arguments) + " ${IMAGE}"


def unit_spec(settings: AppSettings) -> UnitSpec:
    layout = Layout(settings.name)
    return UnitSpec(
        name=layout.unit_template, command=run_command(settings),
        description=f"{settings.name} instance on port %i (app role)", user="root",
        create_user=False, restart="on-failure", restart_sec=2,
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
            ("ExecStop", f"{DOCKER} stop --time {settings.stop_timeout} {settings.name}-%i")))
