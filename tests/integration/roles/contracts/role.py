"""A test role for the engine's handler contracts on a real host, with a real systemd service.

The service (contracts-app) takes two seconds after each start to copy its config to
/run/contracts-ready, so a handler that does not wait for readiness returns before it is
there. ``app:restart`` restarts it and waits; ``app:reload`` only appends to a log. The tuning
file's step decides which of the two a change needs: a restart only when the restart setting
changed. The last step fails on purpose when ``contracts_fail`` is set, after the files changed.
"""

from __future__ import annotations

from collections.abc import Iterator

from provisioner.commands import write_bytes_command
from provisioner.host import Host
from provisioner.ops.files import ensure_file
from provisioner.step import Handler, Plan, Probed, Step

LOG = "/var/log/contracts-handlers"
UNIT = """[Unit]
Description=provisioner test service: ready two seconds after it starts

[Service]
ExecStartPre=/bin/rm -f /run/contracts-ready
ExecStart=/bin/sh -c 'sleep 2; cp /etc/contracts/app.conf /run/contracts-ready; exec sleep infinity'
"""

HANDLERS = (
    Handler("app:restart", f"systemctl daemon-reload && systemctl restart contracts-app && "
            f"echo restarted >> {LOG}", supersedes=("app:reload",),
            ready="test -e /run/contracts-ready", ready_timeout=30),
    Handler("app:reload", f"echo reloaded >> {LOG}"),
)


def steps(host: Host) -> Iterator[Step]:
    yield ensure_file(host, "/etc/systemd/system/contracts-app.service", UNIT,
                      notify=("app:restart",))
    yield ensure_file(host, "/etc/contracts/app.conf", f"value={host.vars['contracts_value']}\n",
                      notify=("app:restart",))
    yield tuning(str(host.vars["contracts_restart_setting"]),
                 str(host.vars["contracts_reload_setting"]))
    yield Step("a check that fails on purpose when asked", "true", lambda probed: (
        Plan("breaks", action="echo 'failing on purpose' >&2; exit 3")
        if host.vars["contracts_fail"] else Plan("passes")))


def tuning(restart_setting: str, reload_setting: str) -> Step:
    """/etc/contracts/tuning.conf; its change restarts the app only when the restart setting
    differs, else reloads it (decide chooses)."""
    path = "/etc/contracts/tuning.conf"
    wanted = [f"restart_setting={restart_setting}", f"reload_setting={reload_setting}"]

    def decide(probed: Probed) -> Plan:
        current = probed.output.splitlines()
        if current == wanted:
            return Plan("as wanted")
        needs = "app:reload" if wanted[0] in current else "app:restart"
        write = write_bytes_command(("\n".join(wanted) + "\n").encode(), path)
        return Plan(f"settings changed ({needs.split(':')[1]} needed)",
                    action=f"mkdir -p /etc/contracts && {write}", notify=(needs,))

    return Step(f"tuning {path}", f"cat {path} 2>/dev/null || true", decide,
                notify=("app:reload", "app:restart"))
