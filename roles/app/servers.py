"""The nginx upstream's server list of an app: one line per instance, its live port.

nginx's configuration (roles/nginx) includes /etc/nginx/apps/<app>.servers inside the upstream
that names the app (``{name: api, app: stet}``). A deploy rewrites the file as it moves each
instance (release.py); provisioning renders the same lines from the live files the deploys
left, so a provision after a deploy keeps the ports that serve. Before the first deploy each
instance is listed on its own port, where nothing answers yet (nginx answers 502 until then).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from provisioner.commands import quote
from provisioner.errors import RoleError
from provisioner.ops.file_writes import DesiredFile
from provisioner.ops.files import plan_file
from provisioner.ops.path_state import missing_directories, parse_path_state, probe_path
from provisioner.step import Plan, Probed, Step
from roles.app.layout import Layout
from roles.app.settings import AppSettings
from roles.nginx.upstreams import read_upstreams

HEADER = "# Written by provisioner's app role and by each deploy: the ports serving {app}.\n"
_SPLIT = "==servers==\n"


def server_options(variables: Mapping[str, Any], app: str) -> str:
    """``max_fails=N fail_timeout=T`` of the nginx upstream that takes its servers from ``app``."""
    for upstream in read_upstreams(variables):
        if upstream.app == app:
            return f"max_fails={upstream.max_fails} fail_timeout={upstream.fail_timeout}"
    raise RoleError(f"no nginx upstream takes its servers from app {app!r}: add one to "
                    f"nginx_upstreams, e.g. {{name: api, app: {app}}}, and give it to a site's "
                    "location as upstream (app_name names the app).")


def server_line(port: int | str, options: str) -> str:
    return f"server 127.0.0.1:{port} {options};"


def render_servers(settings: AppSettings, live_ports: Mapping[int, int], options: str) -> str:
    """Each instance on its live port, or its own port when no deploy recorded one."""
    lines = [server_line(live_ports.get(instance, instance), options)
             for instance in settings.instances]
    return HEADER.format(app=settings.name) + "\n".join(lines) + "\n"


def probe_live(settings: AppSettings) -> str:
    """Each instance's live file as ``live <instance> <port> <version>`` (read-only)."""
    layout = Layout(settings.name)
    return "\n".join(f"printf 'live {instance} %s\\n' \"$(head -n 1 "
                     f"{quote(layout.live(instance))} 2>/dev/null)\""
                     for instance in settings.instances)


def parse_live(output: str, instances: Sequence[int]) -> dict[int, int]:
    """The live port of each instance that has one (a damaged file counts as none)."""
    ports = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[0] == "live" and parts[1].isdigit() and parts[2].isdigit():
            instance, port = int(parts[1]), int(parts[2])
            if instance in instances and 0 < port < 65536:
                ports[instance] = port
    return ports


def ensure_servers(settings: AppSettings, options: str, notify: Sequence[str]) -> Step:
    path = Layout(settings.name).servers

    def decide(probed: Probed) -> Plan:
        live, _, state = probed.output.partition(_SPLIT)
        content = render_servers(settings, parse_live(live, settings.instances), options)
        desired = DesiredFile(path, content.encode())
        return plan_file(parse_path_state(state), desired, True, "",
                         missing_directories(path, state))

    probe = f"{probe_live(settings)}\necho {quote(_SPLIT.strip())}\n" \
            f"{probe_path(path, with_content=True)}"
    return Step(f"nginx servers {path} of {settings.name} (the live ports)", probe, decide,
                tuple(notify))
