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
USERLIST = "/etc/pgbouncer/userlist.txt"
#: Where the ini and userlist steps keep the files they replace until a handler proved the
#: new ones: a refused reload, or a failed restart, puts them back (PgBouncer would otherwise
#: keep a file it refuses on disk, and its next restart would fail on it).
PREVIOUS = "/var/lib/provisioner/pgbouncer-previous"
#: Tenths of a second the reload waits for PgBouncer to log the signal.
_WAIT_TENTHS = 100
_SAVED = (INI, USERLIST)


def save_previous_command(*, keep_existing: bool = False) -> str:
    """Shell saving the live ini and userlist into PREVIOUS (a missing one as absent); with
    ``keep_existing`` a save the ini step made this run is kept. A failed save stops the
    action before anything is written."""
    fail = "{ echo 'could not save the previous PgBouncer configuration' >&2; exit 1; }"
    lines = [f"rm -rf {PREVIOUS} && ( umask 077 && mkdir -p {PREVIOUS} ) || {fail}"]
    for index, path in enumerate(_SAVED):
        lines.append(f"{{ [ ! -e {path} ] || cp -p {path} {PREVIOUS}/{index}; }} || {fail}")
    lines.append(f"touch {PREVIOUS}/complete || {fail}")
    save = "\n".join(lines)
    if keep_existing:
        return f"if [ ! -f {PREVIOUS}/complete ]; then\n{save}\nfi"
    return save


#: Puts the saved files back (a file absent before is removed); false when there is no save.
_RESTORE = f"""pgb_restore() {{
  [ -f {PREVIOUS}/complete ] || return 1
  for pair in {" ".join(f"{index}:{path}" for index, path in enumerate(_SAVED))}; do
    index=${{pair%%:*}}; path=${{pair#*:}}
    if [ -e "{PREVIOUS}/$index" ]; then
      cp -p "{PREVIOUS}/$index" "$path.provisioner-restore" && \
mv -f "$path.provisioner-restore" "$path" || return 1
    else rm -f "$path" || return 1; fi
  done
  rm -rf {PREVIOUS}
}}"""

#: The admin console as the OS user PgBouncer runs as: over the Unix socket, user pgbouncer
#: needs no password (on the port in $PGPORT, read from the live ini: a reload keeps it).
_CONSOLE = run_as("postgres", "psql", "-X", "-q", "-A", "-t", "-h", SOCKET_DIR, "-U",
                  "pgbouncer", "-d", "pgbouncer", "-c", "SHOW VERSION")

_RELOAD = f"""{_RESTORE}
log={quote(LOG)}
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
  if pgb_restore; then
    {join("systemctl", "reload", UNIT)} && \\
      echo "The previous pgbouncer.ini and userlist are back on disk and reloaded, so a \\
restart starts with them; fix the inventory's value and run again." >&2
  else
    echo "No previous configuration was saved to go back to: the refused file stays in {INI}" >&2
  fi
  exit 1
fi
rm -rf {PREVIOUS}
"""

_RESTART = f"""{_RESTORE}
if ! {join("systemctl", "restart", UNIT)}; then
  echo "PgBouncer did not start; the end of {LOG}:" >&2
  tail -n 15 {quote(LOG)} >&2
  if pgb_restore && {join("systemctl", "restart", UNIT)}; then
    echo "The previous pgbouncer.ini and userlist are back and PgBouncer runs with them; fix \\
the inventory's value and run again." >&2
  fi
  exit 1
fi
rm -rf {PREVIOUS}
"""


def reload_handler(name: str) -> Handler:
    """Reload (SIGHUP, same PID, clients stay connected), failing when PgBouncer refused it."""
    return Handler(name, _RELOAD)


def restart_handler(name: str, supersedes: tuple[str, ...]) -> Handler:
    """Restart, for settings PgBouncer reads only when it starts; it drops every connection."""
    return Handler(name, _RESTART, supersedes=supersedes)
