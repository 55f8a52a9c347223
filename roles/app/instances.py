"""Keeping the running instances in step with app_instances, and the app's claim on its names.

A provision after a deploy finds instances the inventory no longer lists (their units still
running), instances it lists that never started, and, after app_alternate_port_offset changed,
instances serving on a port the new offset does not give them. In that order of safety:

- an instance added starts with the version the others serve, by the move program (health
  check and all), so capacity comes back without a deploy;
- an instance serving on an out-of-place port stays where it is: the move program changed
  with the offset, so the app's handler moves it to its own port, drained, like any move;
- a unit on a port no configured instance uses or serves leaves nginx first (the server list,
  written earlier in the run, no longer names it; nginx reloads here and is waited for), then
  drains, stops and is disabled; the live file of an instance taken out goes.

The claim (``guard_step``): one app per host, and ``/etc/<app>`` only when it is the role's own
(a marker file), so an app named after a directory that is not its own (``ssl``,
``provisioner``) is refused before anything there changes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from provisioner.commands import quote
from provisioner.step import Plan, Probed, Refused, Step
from roles.app.layout import STATE_ROOT, Layout
from roles.app.move import detached, instances_table, reload_and_wait, wait_for_no_connection
from roles.app.settings import AppSettings

#: The file that makes /etc/<app> the role's own.
MARKER = ".provisioner-app"


@dataclass(frozen=True)
class InstancesFound:
    live: dict[str, tuple[int, str]]
    units: set[int]


def probe_instances(settings: AppSettings) -> str:
    """Read-only: the app's instance units that run or start at boot, and every live file."""
    pattern = quote(f"{settings.name}@*.service")
    wants = "/etc/systemd/system/multi-user.target.wants"
    return (f"systemctl list-units --plain --no-legend --state=active,activating {pattern} "
            "| awk '{print \"unit \" $1}'\n"
            f"for f in {wants}/{quote(settings.name)}@*.service; do [ -e \"$f\" ] && "
            "echo \"unit ${f##*/}\"; done\n"
            f"for f in {quote(Layout(settings.name).live_dir)}/*; do [ -f \"$f\" ] && "
            "echo \"live ${f##*/} $(head -n 1 \"$f\")\"; done; true")


def parse_instances(settings: AppSettings, output: str) -> InstancesFound:
    prefix, live, units = f"unit {settings.name}@", {}, set()
    for line in output.splitlines():
        if line.startswith(prefix) and line.endswith(".service"):
            port = line[len(prefix):-len(".service")]
            if port.isdigit():
                units.add(int(port))
        parts = line.split()
        if len(parts) == 4 and parts[0] == "live" and parts[2].isdigit() and \
                0 < int(parts[2]) < 65536:
            live[parts[1]] = (int(parts[2]), parts[3])
        elif len(parts) >= 2 and parts[0] == "live":
            live.setdefault(parts[1], (0, ""))
    return InstancesFound(live, units)


def plan_instances(settings: AppSettings, found: InstancesFound) -> Plan:
    configured = [str(instance) for instance in settings.instances]
    serving = Counter(version for name, (port, version) in found.live.items()
                      if name in configured and port)
    version = serving.most_common(1)[0][0] if serving else ""
    start = [name for name in configured if name not in found.live or not found.live[name][0]]
    start = start if version else []
    wanted = {port for instance in settings.instances for port in settings.ports_of(instance)}
    kept = {port for name, (port, _) in found.live.items() if name in configured}
    retire = sorted(found.units - wanted - kept)
    gone = sorted(name for name in found.live if name not in configured)
    if not start and not retire and not gone:
        return Plan("in step with app_instances")
    reasons = [*(f"started instance {name} with {version}" for name in start),
               *(f"retired {settings.name}@{port} (no configured instance uses its port)"
                 for port in retire),
               *(f"forgot instance {name} (no longer in app_instances)" for name in gone)]
    action = start_action(settings, start, version) + retire_action(settings, retire, gone)
    return Plan(", ".join(reasons), action=action)


def instances_step(settings: AppSettings) -> Step:
    def decide(probed: Probed) -> Plan:
        return plan_instances(settings, parse_instances(settings, probed.output))

    return Step(f"instances of {settings.name} in step with app_instances",
                probe_instances(settings), decide)


def start_action(settings: AppSettings, instances: list[str], version: str) -> str:
    """Each added instance moved (from nothing) to the serving version."""
    program = quote(Layout(settings.name).move_program)
    return "".join(detached(program, f"{quote(instance)} {quote(version)}",
                            f"{settings.name}-{instance}", then='[ "$rc" -eq 0 ] || exit "$rc"')
                   for instance in instances)


def retire_action(settings: AppSettings, ports: list[int], gone: list[str]) -> str:
    """Out of nginx (reload waited for), drained, stopped and disabled; files forgotten."""
    layout = Layout(settings.name)
    if not ports and not gone:
        return ""
    units = " ".join(quote(layout.unit(port)) for port in ports)
    files = " ".join([*(quote(layout.live(int(name))) for name in gone if name.isdigit()),
                      *(quote(layout.slot_env(port)) for port in ports)])
    drains = "".join(f"{wait_for_no_connection(str(port), settings.drain_timeout)}\n"
                     for port in ports)
    return f"""if systemctl is-active --quiet nginx.service; then
{reload_and_wait("exit 1", "exit 1")}fi
{drains}{f"systemctl disable --now --quiet {units} || exit 1" if units else ""}
{f"rm -f {files}" if files else ""}
"""


def guard_step(settings: AppSettings) -> Step:
    """One app per host, and /etc/<app> the role's own (see the module docstring)."""
    layout = Layout(settings.name)
    etc, lock = quote(layout.etc), quote(layout.lock)
    probe = (f"for d in {STATE_ROOT}/*/; do [ -d \"$d\" ] || continue; d=${{d%/}}; "
             "echo \"app ${d##*/}\"; done\n"
             f"if [ -e {etc}/{MARKER} ]; then echo 'etc ours'; elif [ -e {etc} ] && [ -d "
             f"{quote(layout.state)} ]; then echo 'etc unmarked'; elif [ -e {etc} ]; then "
             "echo 'etc foreign'; else echo 'etc absent'; fi\n"
             f"[ -f {lock} ] && echo \"lock $(grep -E '^(action|version|who|since)=' {lock} | "
             "tr '\\n' ' ')\"; true")

    def decide(probed: Probed) -> Plan:
        return plan_guard(settings, probed.output)

    return Step(f"{Layout(settings.name).etc} and the host's app are {settings.name}'s", probe,
                decide)


def plan_guard(settings: AppSettings, output: str) -> Plan:
    others = [line[4:] for line in output.splitlines()
              if line.startswith("app ") and line[4:] != settings.name]
    etc = Layout(settings.name).etc
    if others:
        raise Refused(f"this host runs app {others[0]} (its state in {STATE_ROOT}/{others[0]}); "
                      f"a host runs one app, and app_name {settings.name} would leave that "
                      f"one's containers running unlisted. Keep app_name {others[0]}, or take "
                      f"it out by hand first: systemctl disable --now '{others[0]}@*', then "
                      f"remove {STATE_ROOT}/{others[0]} and /etc/nginx/apps/{others[0]}.servers.")
    held = next((line[5:] for line in output.splitlines() if line.startswith("lock ")), None)
    if held is not None:
        raise Refused(f"a deploy of {settings.name} holds its lock ({held.strip()}): a "
                      "provision now would move the instances under it. Provision once it "
                      "ends; a lock a dead deploy left goes with the next deploy, or with "
                      "invoke deploy --force-unlock.")
    if "etc foreign" in output:
        raise Refused(f"{etc} exists and is not the app role's (no {MARKER} in it): app_name "
                      f"{settings.name} would take over another program's directory. Choose "
                      "another app_name.")
    if "etc ours" in output:
        return Plan("the host's one app; its directory")
    if "etc unmarked" in output:  # provisioned before the marker existed: the state is ours
        return Plan(f"marked {etc} as the role's", action=f"printf 'app role of provisioner\\n' "
                                                         f"> {quote(etc + '/' + MARKER)}")
    return Plan(f"claimed {etc}", action=f"mkdir -m 0750 {quote(etc)} && "
                                         f"printf 'app role of provisioner\\n' > "
                                         f"{quote(etc + '/' + MARKER)}")


def table_step(settings: AppSettings, refresh: str) -> Step:
    """The move program's table of instances and ports. A change to an instance's ports (a
    new offset) notifies ``refresh``, which moves the instances to them; an instance only
    added or taken out notifies nothing (instances_step starts or retires it alone)."""
    path = Layout(settings.name).instances_table
    wanted = instances_table(settings)

    def decide(probed: Probed) -> Plan:
        current = probed.output if probed.exit_code == 0 else ""
        if current == wanted:
            return Plan("as desired")
        before = _ports(current)
        moved = sorted(name for name, ports in _ports(wanted).items()
                       if name in before and before[name] != ports)
        reason = (f"ports of instance {', '.join(moved)} changed" if moved else
                  "instances added or taken out" if current else "created")
        action = (f"printf '%s' {quote(wanted)} > {quote(path + '.tmp')} && "
                  f"mv {quote(path + '.tmp')} {quote(path)}")
        return Plan(reason, action=action, notify=(refresh,) if moved else (),
                    all_or_nothing=True)

    return Step(f"instances table {path}", f"cat {quote(path)}", decide, (refresh,))


def _ports(table: str) -> dict[str, tuple[str, ...]]:
    return {parts[0]: tuple(parts[1:]) for parts in map(str.split, table.splitlines()) if parts}
