"""The pgbouncer role's handlers: a reload that fails when PgBouncer refused the new files, and
a restart (only for start-only settings) that shows PgBouncer's last words when it fails.

``systemctl reload pgbouncer`` is Debian's ``ExecReload=/bin/kill -HUP $MAINPID``: it succeeds
whatever PgBouncer thinks of the new file, and PgBouncer, when it cannot load it, logs
``ERROR ...`` and ``WARNING config file loading failed`` (or ``ERROR broken auth file``) and
keeps its old configuration. So the reload waits for PgBouncer's ``got SIGHUP`` line, asks the
admin console for its version (PgBouncer has one thread: once it answers, the reload is
done and logged), and fails with the ERROR and WARNING lines PgBouncer wrote since, leaving
out those of client and server connections (``C-0x...``, ``S-0x...``).
"""

from __future__ import annotations

from provisioner.commands import join, quote, run_as
from provisioner.step import Handler

UNIT = "pgbouncer.service"
LOG = "/var/log/postgresql/pgbouncer.log"
INI = "/etc/pgbouncer/pgbouncer.ini"
SOCKET_DIR = "/var/run/postgresql"
#: Tenths of a second the reload waits for PgBouncer to log the signal.
_WAIT_TENTHS = 100

#: The admin console as the OS user PgBouncer runs as: over the Unix socket, user pgbouncer
#: needs no password (on the port in $PGPORT, read from the live ini: a reload keeps it).
_CONSOLE = run_as("postgres", "psql", "-X", "-q", "-A", "-t", "-h", SOCKET_DIR, "-U",
                  "pgbouncer", "-d", "pgbouncer", "-c", "SHOW VERSION")

_RELOAD = f"""log={quote(LOG)}
start=$(stat -c %s "$log" 2>/dev/null || echo 0)
{join("systemctl", "reload", UNIT)}
n=0
while :; do
  size=$(stat -c %s "$log" 2>/dev/null || echo 0)
  [ "$size" -ge "$start" ] || start=0
  tail -c +$((start + 1)) "$log" | grep -q 'got SIGHUP, re-reading config' && break
  n=$((n + 1))
  if [ "$n" -ge {_WAIT_TENTHS} ]; then
    echo "PgBouncer logged no reload within {_WAIT_TENTHS // 10} s; see $log" >&2; exit 1
  fi
  sleep 0.1
done
PGPORT=$(sed -n 's/^listen_port *= *//p' {quote(INI)} | tail -n 1); export PGPORT
{_CONSOLE} >/dev/null 2>&1 || sleep 1
refused=$(tail -c +$((start + 1)) "$log" | sed -n '/got SIGHUP, re-reading config/,$p' |
  grep -E '\\] (ERROR|WARNING|FATAL) ' | grep -vE '\\] (ERROR|WARNING|FATAL) [CS]-0x' || :)
if [ -n "$refused" ]; then
  printf 'PgBouncer refused the new configuration and keeps running the old one:\\n%s\\n' \\
    "$refused" >&2
  exit 1
fi
"""

_RESTART = f"""if ! {join("systemctl", "restart", UNIT)}; then
  echo "PgBouncer did not start; the end of {LOG}:" >&2
  tail -n 15 {quote(LOG)} >&2
  exit 1
fi
"""


def reload_handler(name: str) -> Handler:
    """Reload (SIGHUP, same PID, clients stay connected), failing when PgBouncer refused it."""
    return Handler(name, _RELOAD)


def restart_handler(name: str, supersedes: tuple[str, ...]) -> Handler:
    """Restart, for settings PgBouncer reads only when it starts; it drops every connection."""
    return Handler(name, _RESTART, supersedes=supersedes)
