"""The reload and restart handlers: bounded, proven, and rolled back when the server refuses.

Why not a plain ``systemctl restart``: Debian's postgresql@.service is Type=forking with
``TimeoutStartSec=0`` and an ExecStart whose failure is ignored (``-pg_ctlcluster``), so a
server that cannot start (``shared_buffers`` beyond what the host can map, ``huge_pages = on``
without huge pages) can leave the unit "activating" for ever, and the run hangs until the
command timeout. So the restart is queued (``--no-block``) and polled: done when a NEW
postmaster (another PID) answers and the unit is active; failed at once when systemd says the
start failed, or when the unit is still "activating" with pg_ctlcluster gone (ControlPID 0) and
no postmaster.pid (systemd then waits for a PID file that never comes); failed after
START_SECONDS otherwise.

Never a half-applied config (DESIGN.md): the config step saves the live drop-in and pg_hba.conf
into PREVIOUS before it swaps them (save_previous_command). When the reload or restart fails,
or the server then reports a problem, the handler prints the server's own words (the new lines
of its log, else the unit's journal), puts the saved files back, reloads or restarts with them
so the host keeps serving, and fails. The next run finds the inventory's values missing from
the drop-in again and reports the same failure, never "ok". A handler that succeeded removes
the save, and so does a restart or reload asked for by the settings-in-effect step (a save from
an older change must never be restored over a newer one).
"""

from __future__ import annotations

from provisioner.commands import quote
from provisioner.ops.postgres import CLUSTER, CLUSTER_SHELL, psql_command
from roles.postgres.settings import DROPIN_NAME

RESTART = "postgresql:restart"
RELOAD = "postgresql:reload"
#: Where the config step keeps the files it replaces until a handler proved the new ones.
PREVIOUS = "/var/lib/provisioner/postgres-previous"
#: How long a start may take before the handler gives up (well under any command timeout).
START_SECONDS = 60
#: How long a start whose postmaster is alive but not answering yet (crash recovery, a long
#: WAL replay: "the database system is starting up") is waited for before it counts as failed.
STARTING_SECONDS = 300

#: Problems the server reports after a reload or restart, one line each (none: all applied).
#: A restart only someone else's change waits for (ALTER SYSTEM of a setting we do not manage)
#: is not ours to make, nor a failure of our change.
PROBLEMS_SQL = (
    "SELECT sourcefile || ':' || sourceline || ': ' || name || ' = ' || coalesce(setting, '') "
    "|| ': ' || error FROM pg_file_settings WHERE error IS NOT NULL "
    "UNION ALL SELECT sourcefile || ':' || sourceline || ': ' || name || ' is overridden by a "
    f"later file' FROM pg_file_settings WHERE sourcefile LIKE '%/conf.d/{DROPIN_NAME}' AND "
    "NOT applied AND error IS NULL "
    "UNION ALL SELECT name || ' waits for a restart' FROM pg_settings WHERE pending_restart "
    "AND name IN (SELECT name FROM pg_file_settings WHERE sourcefile LIKE "
    f"'%/conf.d/{DROPIN_NAME}') "
    "UNION ALL SELECT 'pg_hba.conf line ' || line_number || ': ' || error FROM "
    "pg_hba_file_rules WHERE error IS NOT NULL")


#: Lines of the server's log that say a change did not fully apply though the server answers:
#: an address it could not bind (it starts on the others, localhost say), a setting read only
#: at start that a reload left as it was (ssl_cert_file: "SSL configuration was not reloaded";
#: the next restart would fail), a file with errors.
LOG_PROBLEMS = "could not bind|could not create listen socket|was not reloaded|contains errors"
#: The transient unit a handler's change runs in: a controller whose connection dies (killed,
#: network gone) no longer takes the shell doing the restart, and its rollback, with it.
APPLY_UNIT = "provisioner-postgresql-apply"
#: Succeeds while a change runs in one (each gets a name of its own, APPLY_UNIT-<pid>-<time>:
#: a finished transient unit may stay loaded a moment, and its name could not be reused).
APPLY_RUNNING = (f"systemctl list-units --no-legend --plain --state=active,activating,"
                 f"deactivating '{APPLY_UNIT}-*' | grep -q .")
APPLY_DIR = "/var/lib/provisioner/postgres-apply"
#: Half-seconds a change waits for an earlier one still running in APPLY_UNIT.
_APPLY_WAIT = 4 * START_SECONDS * 2
_SCRIPT_END = "PROVISIONER_POSTGRES_APPLY_END"


def detached(script: str, name: str) -> str:
    """``script`` run as the transient service APPLY_UNIT (``systemd-run --wait``): this shell
    waits for it and prints what it printed, with its exit status; when this shell dies with
    the controller's connection, the service carries on to its end (rollback included). An
    earlier change still running there is waited for first."""
    if _SCRIPT_END in script:
        raise ValueError("the script holds the here-document's delimiter")
    return f"""d={APPLY_DIR}
( umask 077 && mkdir -p "$d" ) || exit 1
i=0; while {APPLY_RUNNING}; do
  if [ "$i" -ge {_APPLY_WAIT} ]; then
    echo "an earlier change of PostgreSQL ({APPLY_UNIT}-*) still runs; try again later" >&2
    exit 1; fi
  i=$((i + 1)); sleep 0.5
done
cat > "$d/{name}.sh" <<'{_SCRIPT_END}' || exit 1
{script}
{_SCRIPT_END}
: > "$d/{name}.out" || exit 1
systemd-run --quiet --wait --collect --unit="{APPLY_UNIT}-$$-$(date +%s%N)" \
  -p StandardOutput=append:"$d/{name}.out" -p StandardError=append:"$d/{name}.out" \
  /bin/sh "$d/{name}.sh"
rc=$?
cat "$d/{name}.out"
exit "$rc"
"""


def save_previous_command(paths: list[str]) -> str:
    """Shell saving each path (or that it is absent) into PREVIOUS, replacing an older save;
    a failed save stops the action before anything is swapped."""
    lines = [f"rm -rf {PREVIOUS} && ( umask 077 && mkdir -p {PREVIOUS} ) || "
             "{ echo 'could not save the previous PostgreSQL configuration' >&2; exit 1; }"]
    for index, path in enumerate(paths):
        lines.append(f"printf '%s\\n' {quote(f'{index} {path}')} >> {PREVIOUS}/paths && "
                     f"{{ [ ! -e {quote(path)} ] || cp -p {quote(path)} {PREVIOUS}/{index}; }} || "
                     "{ echo 'could not save the previous PostgreSQL configuration' >&2; "
                     "exit 1; }")
    return "\n".join(lines)


def clear_previous_command() -> str:
    return f"rm -rf {PREVIOUS}"


#: PgBouncer on this host (its role's ini), told to PAUSE around a restart: its clients wait
#: for the server instead of losing their sessions and queries mid-flight. PAUSE is given 2 s
#: (it waits for running transactions; the pause holds from when PgBouncer takes it), RESUME
#: follows the restart whatever its outcome.
PGBOUNCER_INI = "/etc/pgbouncer/pgbouncer.ini"
PGBOUNCER_CONSOLE = ("runuser -u postgres -- psql -X -q -A -t -h /var/run/postgresql -U "
                     "pgbouncer -d pgbouncer")

#: pg_log_tail: the server's last problem lines of this change, without the logging set's line
#: prefix (time, PID, user, database, application, client) and at most 240 characters each,
#: so the failure shows what the server said, not the start of a cut-off line.
#: Shell functions the handlers use; $unit, $pglog and $logsize are set before them.
_FUNCTIONS = f"""\
pg_answers() {{ {psql_command('SELECT 1')} >/dev/null 2>&1; }}
pg_pid() {{ head -n 1 "$pgdata/postmaster.pid" 2>/dev/null; }}
pgb_tell() {{
  pgbport=$(sed -n 's/^listen_port *= *//p' {PGBOUNCER_INI} 2>/dev/null | tail -n 1)
  [ -n "$pgbport" ] && systemctl is-active --quiet pgbouncer.service || return 0
  timeout "$1" {PGBOUNCER_CONSOLE} -p "$pgbport" -c "$2" >/dev/null 2>&1 || :
}}
pg_restarted() {{
  pgb_tell 2 PAUSE; pg_restart_polled; rc=$?; pgb_tell 10 RESUME; return "$rc"
}}
pg_restart_polled() {{
  old=$(pg_pid); timeout 30 systemctl restart --no-block "$unit" || return 1
  i=0; while [ "$i" -lt {STARTING_SECONDS * 2} ]; do
    state=$(systemctl show -p ActiveState --value "$unit")
    new=$(pg_pid)
    # past START_SECONDS only a postmaster that is alive and starting (recovery) is waited for
    if [ "$i" -ge {START_SECONDS * 2} ] && ! {{ [ -n "$new" ] && kill -0 "$new" 2>/dev/null; }}
    then return 1; fi
    if [ "$state" = failed ]; then return 1; fi
    if [ "$state" = activating ] && [ -z "$new" ] && \
       [ "$(systemctl show -p ControlPID --value "$unit")" = 0 ]; then return 1; fi
    if [ "$state" = active ] && [ -n "$new" ] && [ "$new" != "$old" ] && pg_answers; then
      return 0; fi
    i=$((i + 1)); sleep 0.5
  done
  return 1
}}
pg_reloaded() {{
  before=$( {psql_command("SELECT pg_conf_load_time()")} ) || return 1
  timeout 30 systemctl reload "$unit" || return 1
  i=0; while [ "$i" -lt {START_SECONDS * 2} ]; do
    after=$( {psql_command("SELECT pg_conf_load_time()")} 2>/dev/null )
    if [ -n "$after" ] && [ "$after" != "$before" ]; then return 0; fi
    i=$((i + 1)); sleep 0.5
  done
  return 1
}}
pg_problems() {{ {psql_command(PROBLEMS_SQL)} && \
  {{ tail -c +"$((logsize + 1))" "$pglog" 2>/dev/null | grep -E "{LOG_PROBLEMS}" | tail -n 8
     true; }}; }}
pg_log_tail() {{
  found=$(tail -c +"$((logsize + 1))" "$pglog" 2>/dev/null | grep -E \
'FATAL|ERROR|PANIC|HINT|DETAIL|invalid|parameter|could not' | tail -n 6 | \
sed -E 's/^.* user=[^ ]*,client=[^ ]* //' | cut -c 1-240)
  if [ -z "$found" ]; then
    found=$(journalctl -u "$unit" -n 8 --no-pager -o cat 2>/dev/null); fi
  printf '%s\\n' "$found"
}}
pg_restore_previous() {{
  [ -f {PREVIOUS}/paths ] || return 1
  while read -r index path; do
    if [ -e "{PREVIOUS}/$index" ]; then
      cp -p "{PREVIOUS}/$index" "$path.provisioner-restore" && \
mv -f "$path.provisioner-restore" "$path" || return 1
    else rm -f "$path" || return 1; fi
  done < {PREVIOUS}/paths
  rm -rf {PREVIOUS}
}}"""


def _action(verb: str) -> str:
    """The handler's shell: change, prove, else roll back; ``verb`` restarted or reloaded."""
    kind = "restart" if verb == "restarted" else "reload"
    return f"""{CLUSTER_SHELL}
unit="postgresql@$pgver-{CLUSTER}.service"
pglog="/var/log/postgresql/postgresql-$pgver-{CLUSTER}.log"
logsize=$(stat -c %s "$pglog" 2>/dev/null || echo 0)
{_FUNCTIONS}
if pg_{verb}; then
  problems=$(pg_problems) && [ -z "$problems" ] && {{ {clear_previous_command()}; exit 0; }}
  printf 'PostgreSQL did not apply its configuration:\\n%s\\n' "$problems"
else
  echo "PostgreSQL was not {verb} with the new configuration (unit $unit is \
$(systemctl show -p ActiveState --value "$unit"); waited at most {START_SECONDS} s, \
{STARTING_SECONDS} s while it recovers); the server says:"
fi
pg_log_tail
if pg_restore_previous; then
  if pg_{verb}; then
    echo "The previous conf.d/{DROPIN_NAME} and pg_hba.conf are back and PostgreSQL runs \
with them; fix the inventory's value and run again."
  else
    echo "The previous conf.d/{DROPIN_NAME} and pg_hba.conf are back, but the {kind} with \
them failed too: see $pglog"
  fi
else
  echo "No previous configuration was saved to go back to: see $pglog"
fi
exit 1"""


def start_action() -> str:
    """A bounded (re)start of a cluster that is not active (stopped, failed, or "activating"
    for ever), failing with the server's words."""
    return detached(f"""{CLUSTER_SHELL}
unit="postgresql@$pgver-{CLUSTER}.service"
pglog="/var/log/postgresql/postgresql-$pgver-{CLUSTER}.log"
logsize=$(stat -c %s "$pglog" 2>/dev/null || echo 0)
{_FUNCTIONS}
pg_restarted && exit 0
echo "PostgreSQL did not start (unit $unit is $(systemctl show -p ActiveState --value \
"$unit"); waited at most {START_SECONDS} s, {STARTING_SECONDS} s while it recovers); the \
server says:"
pg_log_tail
exit 1""", "start")


def recover_action() -> str:
    """Put back the configuration a change saved before it was cut off (its run killed, the
    unit's rollback never ran) while the server is down, and start the server with it: the
    inventory's value, still unproven, is then applied again by the steps after."""
    return detached(f"""{CLUSTER_SHELL}
unit="postgresql@$pgver-{CLUSTER}.service"
pglog="/var/log/postgresql/postgresql-$pgver-{CLUSTER}.log"
logsize=$(stat -c %s "$pglog" 2>/dev/null || echo 0)
{_FUNCTIONS}
[ -f {PREVIOUS}/paths ] || exit 0
[ "$(systemctl show -p ActiveState --value "$unit")" = active ] && exit 0
if ! pg_restore_previous; then
  echo "could not put back the configuration saved in {PREVIOUS}" >&2; exit 1; fi
pg_restarted && exit 0
echo "The configuration saved in {PREVIOUS} is back, but PostgreSQL did not start with it \
either; the server says:"
pg_log_tail
exit 1""", "recover")


def restart_action() -> str:
    return detached(_action("restarted"), "restart")


def reload_action() -> str:
    return detached(_action("reloaded"), "reload")
