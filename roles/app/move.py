"""The move of one instance to a version: the shell program a deploy, a rollback and a
configuration change all run, so none of them can be a weaker copy of another.

Each instance has two ports, its own and that plus app_alternate_port_offset; one serves, the
other is free. ``move <instance> <version>`` (installed as /var/lib/provisioner/apps/<app>/move):

1. the free port's unit starts the version beside the old container;
2. its health path must answer 2xx within app_health_timeout; a container that exits or never
   answers fails here: its last log lines are printed, it is stopped, nothing else changed;
3. the upstream's server list (servers.py) gets the new port, ``nginx -t`` must accept it, and
   nginx reloads, waited for until every old worker is shutting down (roles/nginx/role.py);
   a failure puts the old list back;
4. the live file records the new port and version; the new unit is enabled for boot; the old
   container drains (no connection left to its port, at most app_drain_timeout), stops and is
   disabled.

Until step 3 the old container alone serves the instance, from step 3 the new one does, so a
move that fails leaves the instance serving. It runs on the host as a transient systemd unit
(``detached``): a controller that dies or is interrupted never leaves a move halfway.
"""

from __future__ import annotations

from provisioner.commands import quote
from roles.app.layout import OWNER, STATE_ROOT, Layout
from roles.app.servers import HEADER, server_line
from roles.app.settings import AppSettings
from roles.nginx.role import RELOADED as NGINX_RELOADED
from roles.nginx.role import WORKERS as NGINX_WORKERS
from roles.nginx.role import WORKERS_BEFORE_RELOAD
from roles.systemd.manifest import restart_dir

#: Where a detached move keeps its output for the shell that waits for it.
RUN_DIR = f"{STATE_ROOT}/.runs"
#: The transient units of moves: a deploy waits while one of them is still running.
UNIT_PREFIX = "provisioner-app-move-"
#: Exit code of a move whose new version did not become healthy (or nginx refused it).
NOT_HEALTHY = 3
_END = "PROVISIONER_APP_MOVE_END"


def move_program(settings: AppSettings, server_options: str) -> str:
    """The program (see the module docstring); ``server_options`` from servers.server_options."""
    return (_arguments(settings) + _start(settings) + _health(settings)
            + _switch(settings, server_options) + _drain(settings))


def instances_table(settings: AppSettings) -> str:
    """The instances and their two ports, one per line, as the program reads them: kept out of
    the program's text, so an instance added or taken out changes no instance's program (and
    moves none of them)."""
    return "".join(f"{instance} {primary} {alternate}\n" for instance in settings.instances
                   for primary, alternate in [settings.ports_of(instance)])


def _arguments(settings: AppSettings) -> str:
    return f"""#!/bin/sh
# Written by provisioner's app role: move one instance of {settings.name} to a version.
set -u
inst=${{1:-}}; version=${{2:-}}
case "$version" in ""|*[!A-Za-z0-9_.-]*) echo "move: bad version '$version'" >&2; exit 2;; esac
state={quote(Layout(settings.name).state)}; table="$state/instances"
case "$inst" in ""|*[!0-9]*) line=;; *) line=$(grep -E "^$inst " "$table" 2>/dev/null);; esac
if [ -z "$line" ]; then
  echo "move: instance '$inst' is none of $(cut -d' ' -f1 "$table" 2>/dev/null | tr '\\n' ' ')" >&2
  exit 2
fi
set -- $line; primary=$2; alternate=$3
"""


def _start(settings: AppSettings) -> str:
    layout = Layout(settings.name)
    image = quote(f"{settings.image}:")
    fetch = ('docker pull --quiet "$image" >/dev/null 2>&1 || give_up "image $image is not on '
             'the host and the registry did not give it"' if settings.source == "registry" else
             'give_up "image $image is not on the host: invoke deploy --version $version sends '
             'it"')
    return f"""live="$state/live/$inst"; cur_port=; cur_version=
if [ -s "$live" ]; then read -r cur_port cur_version < "$live" || true; fi
if [ "$cur_port" = "$primary" ]; then new=$alternate; else new=$primary; fi
unit="{settings.name}@$new.service"
say() {{ echo "instance $inst: $*"; }}
container="{settings.name}-$new"
logs() {{
  echo "last log lines of $container ($unit):"
  {{ docker logs --tail 20 "$container" 2>&1 || journalctl --no-pager -o cat -n 20 -u "$unit"; }} \
    | sed 's/^/  | /'
}}
running() {{
  [ "$(docker inspect --format '{{{{.State.Status}}}}' "$container" 2>/dev/null)" = running ]
}}
give_up() {{ say "$*"; logs; systemctl stop "$unit" 2>/dev/null; exit {NOT_HEALTHY}; }}
systemctl stop "$unit" 2>/dev/null; systemctl reset-failed "$unit" 2>/dev/null
mkdir -p "$state/slots" "$state/live" || exit 1
printf 'IMAGE=%s%s\\nVERSION=%s\\n' {image} "$version" "$version" > "$state/slots/$new.env.tmp" \\
  && mv "$state/slots/$new.env.tmp" "$state/slots/$new.env" || exit 1
image={image}"$version"
if ! docker image inspect "$image" >/dev/null 2>&1; then
  {fetch}
fi
if grep -Eq "^ *[0-9]+: [0-9A-F]+:$(printf '%04X' "$new") [0-9A-F]+:0000 0A " \\
    /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
  say "port $new is taken by a program that is not this app (ss -ltnp shows which): a health \\
check there would ask it, not the new version"; exit {NOT_HEALTHY}
fi
say "starting $version on port $new${{cur_port:+ beside $cur_version on $cur_port}}"
systemctl start "$unit" || give_up "{layout.unit('$new')} did not start"
"""


def _health(settings: AppSettings) -> str:
    path = settings.health_path
    return f"""deadline=$(( $(date +%s) + {settings.health_timeout} ))
while :; do
  running || give_up "version $version on port $new stopped before it was healthy \\
(health check GET {path})"
  code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 "http://127.0.0.1:$new{path}") \\
    || code="no answer"
  # The answer counts only from the new container, still running once it answered.
  case "$code" in 2??) running && break;; esac
  [ "$(date +%s)" -lt "$deadline" ] || give_up "version $version on port $new is not \\
healthy after {settings.health_timeout} s: health check GET {path} got $code"
  sleep 0.5
done
"""


def _switch(settings: AppSettings, options: str) -> str:
    """The upstream's servers with this instance on its new port: the bytes servers.py
    renders from the live files once this move has recorded its port."""
    servers = quote(Layout(settings.name).servers)
    header = quote(HEADER.format(app=settings.name).rstrip("\n"))
    line = server_line("$p", options)
    return f"""{{
  printf '%s\\n' {header}
  for i in $(cut -d' ' -f1 "$table"); do
    p=$i
    if [ "$i" = "$inst" ]; then p=$new
    elif [ -s "$state/live/$i" ]; then read -r p v < "$state/live/$i" || p=$i; fi
    case "$p" in ""|*[!0-9]*) p=$i;; esac
    [ "$p" -ge 1 ] && [ "$p" -le 65535 ] || p=$i  # a damaged file, as servers.parse_live reads it
    echo "{line}"
  done
}} > {servers}.new || give_up "could not write {servers}"
cp -p {servers} {servers}.previous 2>/dev/null || : > {servers}.previous
mv {servers}.new {servers}
put_back() {{ mv {servers}.previous {servers}; }}
if ! out=$(nginx -t -q 2>&1); then put_back; give_up "nginx refused the upstream: $out"; fi
{reload_and_wait('put_back; give_up "nginx did not reload: $out"',
                 'put_back; systemctl reload nginx.service; give_up "nginx did not finish '
                 'reloading within 30 s"')}rm -f {servers}.previous
printf '%s %s\\n' "$new" "$version" > "$live.tmp" && mv "$live.tmp" "$live"
systemctl enable --quiet "$unit" 2>/dev/null || say "could not enable $unit for boot"
"""


def _drain(settings: AppSettings) -> str:
    """Wait until no connection to the old port is left (at most the drain timeout), stop it."""
    return f"""if [ -n "$cur_port" ] && [ "$cur_port" != "$new" ]; then
  {wait_for_no_connection("$cur_port", settings.drain_timeout)}
  systemctl stop "{settings.name}@$cur_port.service"
  systemctl disable --quiet "{settings.name}@$cur_port.service" 2>/dev/null
fi
say "serves $version on port $new${{cur_port:+ (was $cur_version on $cur_port)}}"
echo "moved $inst ${{cur_version:--}} $version $new"
"""


def reload_and_wait(failed: str, timed_out: str) -> str:
    """Shell reloading nginx and waiting (at most 30 s) until its new configuration serves,
    as its role's handler does: ``failed`` runs when the reload fails (its words in $out),
    ``timed_out`` when it never finishes."""
    return (f"{{ {NGINX_WORKERS}; }} > {WORKERS_BEFORE_RELOAD} 2>/dev/null\n"
            f"if ! out=$(systemctl reload nginx.service 2>&1); then {failed}; fi\n"
            f"i=0; until ( {NGINX_RELOADED} ); do\n"
            f"  i=$((i + 1)); [ $i -lt 300 ] || {{ {timed_out}; }}\n  sleep 0.1\ndone\n")


def wait_for_no_connection(port: str, timeout: int) -> str:
    """Shell waiting until no established TCP connection goes to ``port`` (a shell word),
    read from /proc (the minimal image has no ss), at most ``timeout`` seconds."""
    return (f"hex=$(printf '%04X' \"{port}\"); end=$(( $(date +%s) + {timeout} )); "
            "while grep -Eq \"^ *[0-9]+: [0-9A-F]+:[0-9A-F]{4} [0-9A-F]+:$hex 01 \" "
            "/proc/net/tcp /proc/net/tcp6 2>/dev/null && [ \"$(date +%s)\" -lt \"$end\" ]; "
            "do sleep 0.2; done")


def detached(program: str, arguments: str, name: str, *, then: str = 'exit "$rc"') -> str:
    """Shell running ``program`` (a shell word naming a file on the host) with ``arguments``
    (shell words) as a transient systemd service that this shell waits for, printing its
    output, then ``then`` with the service's status in ``$rc``. A shell that dies with the
    controller's connection leaves the service to carry on to its end. ``name`` (an app's
    name and an instance, or shell variables holding them) names the unit: two moves of one
    instance at once cannot both start."""
    out = f'"{RUN_DIR}/{name}.out"'
    unit = f'"--unit={UNIT_PREFIX}{name}"'
    return (f"( umask 077 && mkdir -p {RUN_DIR} ) || exit 1\n: > {out} || exit 1\n"
            f"systemd-run --quiet --wait --collect {unit} "
            f"--property=StandardOutput=append:{out} --property=StandardError=append:{out} "
            f"/bin/sh {program} {arguments}\nrc=$?\ncat {out}\nrm -f {out}\n{then}\n")


def install_program(settings: AppSettings, server_options: str) -> str:
    """Shell writing the move program to its place (atomically): the deploy sends the program
    of the inventory it was started with, so it never runs one an older provision left."""
    program = move_program(settings, server_options)
    if _END in program:
        raise ValueError("the program holds the here-document's delimiter")
    layout = Layout(settings.name)
    path, table = layout.move_program, quote(layout.instances_table)
    return (f"mkdir -p {quote(layout.state)} && printf '%s' {quote(instances_table(settings))} "
            f"> {table}.tmp && mv {table}.tmp {table} || exit 1\n"
            f"cat > {path}.tmp <<'{_END}' && chmod 0700 {path}.tmp && mv {path}.tmp {path} "
            f"|| exit 1\n{program}{_END}\n")


def refresh_action() -> str:
    """The app's restart handler: every live instance moved to the version it runs, one after
    another, so a changed unit, environment or secret takes effect without a moment in which
    no instance serves; then the systemd machinery's restart markers are dropped."""
    move = detached('"$dir/move"', '"$inst" "$version"', "${app}-${inst}",
                    then='[ "$rc" -eq 0 ] || exit "$rc"')
    return (f'for live in {STATE_ROOT}/*/live/*; do [ -s "$live" ] || continue\n'
            'dir=${live%/live/*}; app=${dir##*/}; inst=${live##*/}\n'
            'read -r port version < "$live" || exit 1\n'
            f"{move}done\nrm -f {quote(restart_dir(OWNER))}/*")

