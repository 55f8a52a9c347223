"""The floor: what the work costs through one plain OpenSSH session per host, with no tool at all.

No-op and check scenarios: the floor sends, in one session, exactly the read-only probes provisioner
itself would send for the same roles (built with provisioner's own ``prepare``, the roles'
``steps(host)`` and ``build_batch``), plus the facts script when a template reads facts. No
decision is made inside the timed session; afterwards the runner feeds the output to the steps'
own ``decide`` to prove the host really was converged (a floor that checked nothing would be no
floor).

First converge: a generated shell script doing W's work naively but correctly: every command
runs every time except the package-list refresh, which obeys the same one-hour rule.

Deploy (deploy-1): a hand-written rolling deploy in one session (``deploy_script``): per
instance the app role's move (roles/app/move.py) without its safety beyond the work itself.
"""

from __future__ import annotations

import base64
import functools
import shlex
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provisioner.content.roles import available_roles
from provisioner.content.templates import render_template
from provisioner.facts import FACTS_SCRIPT, Facts, parse_facts
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.loader import load_inventory
from provisioner.ops.cron import render_cron_file
from provisioner.ops.sysctl import render_sysctl_file
from provisioner.run.batch import BatchScript, build_batch, parse_batch
from provisioner.run.engine import RunOptions, prepare
from provisioner.run.session import HostJob, role_steps
from provisioner.step import GroupedProbe, ProbeUnreadable, Step
from roles.app.layout import Layout
from roles.app.servers import HEADER, render_servers, server_line, server_options
from roles.app.settings import AppSettings, read_app
from roles.nginx.role import RELOADED as NGINX_RELOADED
from roles.nginx.role import WORKERS as NGINX_WORKERS
from roles.nginx.role import WORKERS_BEFORE_RELOAD as NGINX_WORKERS_BEFORE_RELOAD

REMOTE_SHELL = "sudo -n /bin/sh -s"


@dataclass(frozen=True)
class CheckScript:
    """One host's floor script and what is needed to judge its output afterwards."""

    host: str
    batch: BatchScript
    steps: tuple[Step, ...]
    with_facts: bool


def ssh_command(config: HostConfig, control_dir: Path | None = None) -> list[str]:
    """OpenSSH argv for an inventory host: its key, the pinned known_hosts, strict checking;
    with control_dir, through a ControlPersist master kept there between runs."""
    argv = ["ssh", "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={config.ssh.known_hosts}",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-p", str(config.port)]
    if control_dir is not None:
        argv += ["-o", "ControlMaster=auto", "-o", f"ControlPath={control_dir}/%C",
                 "-o", "ControlPersist=300"]
    if config.ssh.identity_file is not None:
        argv += ["-i", str(config.ssh.identity_file)]
    return [*argv, f"{config.user}@{config.address}", REMOTE_SHELL]


def load_jobs(inventory: Path, role_dirs: Sequence[Path]) -> list[HostJob]:
    loaded = load_inventory(inventory, available_roles(role_dirs))
    return prepare(list(loaded.hosts.values()), RunOptions(role_dirs=tuple(role_dirs)))


def gather_facts_over_ssh(config: HostConfig) -> Facts:
    done = subprocess.run(ssh_command(config), input=FACTS_SCRIPT, capture_output=True,
                          text=True, check=True, timeout=60)
    return parse_facts(done.stdout)


def check_scripts(inventory: Path, role_dirs: Sequence[Path]) -> dict[str, CheckScript]:
    """Per host: provisioner's probes of its roles as one script (facts first when needed)."""
    scripts = {}
    for job in load_jobs(inventory, role_dirs):
        host = Host(job.config, job.variables, functools.partial(gather_facts_over_ssh, job.config),
                    inventory=job.inventory)
        steps = [step for part in role_steps(host, job.roles) for step in part.steps]
        probes: list[str | GroupedProbe] = [step.wire_probe for step in steps]
        if host.facts_gathered:
            probes.insert(0, FACTS_SCRIPT)
        scripts[job.config.name] = CheckScript(job.config.name, build_batch(probes), tuple(steps),
                                               host.facts_gathered)
    return scripts


def pending_changes(script: CheckScript, output: str) -> tuple[int, int]:
    """(steps that would change, steps that could not be judged) from a floor run's output."""
    probes = parse_batch(script.batch, output).probes
    if script.with_facts:
        probes = probes[1:]
    if len(probes) != len(script.steps):
        return 0, len(script.steps)
    changes = failures = 0
    for step, probed in zip(script.steps, probes, strict=True):
        try:
            changes += step.decide(probed).changes
        except ProbeUnreadable:
            failures += 1
    return changes, failures


def _write(path: str, content: str, owner: str, mode: str) -> str:
    encoded = base64.b64encode(content.encode()).decode()
    target = shlex.quote(path)
    return (f"printf '%s' {encoded} | base64 -d > {target}\n"
            f"chown {owner} {target}\nchmod {mode} {target}\n")


def apply_script(variables: Mapping[str, Any], host_name: str, template_dir: Path) -> str:
    """W in plain shell, for a fresh host; ``set -e`` makes any failure the script's failure."""
    return (_packages_part(variables) + _files_part(variables, host_name, template_dir)
            + _system_part(variables) + _access_part(variables)
            + "systemctl reload nginx.service\n")


def _packages_part(variables: Mapping[str, Any]) -> str:
    """Lists refreshed when older than W's limit, then the packages installed."""
    quote = shlex.quote
    stamp = "/var/lib/apt/periodic/update-success-stamp"
    max_age_minutes = int(variables["provbench_apt_cache_max_age"]) // 60
    apt = ("DEBIAN_FRONTEND=noninteractive apt-get -q -y -o DPkg::Lock::Timeout=600 "
           "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold")
    lines = [
        "set -e",
        f"if [ -z \"$(find {stamp} -mmin -{max_age_minutes} 2>/dev/null)\" ]; then",
        f"  {apt} update >/dev/null && mkdir -p {stamp.rsplit('/', 1)[0]} && touch {stamp}",
        "fi",
        f"{apt} install {' '.join(quote(p) for p in variables['provbench_packages'])} >/dev/null",
    ]
    return "\n".join(lines) + "\n"


def _files_part(variables: Mapping[str, Any], host_name: str, template_dir: Path) -> str:
    """The directory and its ten rendered files."""
    directory = shlex.quote(variables["provbench_directory"])
    script = f"mkdir -p {directory} && chown root:root {directory} && chmod 0755 {directory}\n"
    for index in range(int(variables["provbench_file_count"])):
        content = render_template(template_dir, "etc/provbench/file.conf.j2", {
            **variables, "host_name": host_name, "provbench_file_index": index})
        script += _write(f"{variables['provbench_directory']}/file{index}.conf", content,
                         "root:root", "0644")
    return script


def _system_part(variables: Mapping[str, Any]) -> str:
    """Sysctls applied from their drop-in, services running, the cron file."""
    quote = shlex.quote
    header = variables["provbench_header"]
    sysctl_file = variables["provbench_sysctl_file"]
    script = _write(sysctl_file, render_sysctl_file(variables["provbench_sysctls"], header),
                    "root:root", "0644")
    script += f"sysctl -q -p {quote(sysctl_file)}\n"
    units = " ".join(quote(unit) for unit in variables["provbench_services"])
    script += f"systemctl enable --now {units} 2>/dev/null\n"
    return script + _write(f"/etc/cron.d/{variables['provbench_cron_name']}",
                           render_cron_file([variables["provbench_cron_job"]], {}, header),
                           "root:root", "0644")


def _access_part(variables: Mapping[str, Any]) -> str:
    """The deploy user with its key, and the firewall."""
    quote = shlex.quote
    user = variables["provbench_user"]
    script = (f"id {quote(user)} >/dev/null 2>&1 || useradd --create-home --shell "
              f"{quote(variables['provbench_user_shell'])} --user-group {quote(user)}\n")
    script += f"install -d -o {quote(user)} -g {quote(user)} -m 0700 /home/{user}/.ssh\n"
    script += _write(f"/home/{user}/.ssh/authorized_keys",
                     variables["provbench_authorized_key"].strip() + "\n", f"{user}:{user}",
                     "0600")
    script += f"ufw default {quote(variables['provbench_ufw_default_incoming'])} incoming\n"
    for port in variables["provbench_ufw_tcp_ports"]:
        script += f"ufw allow {int(port)}/tcp\n"
    return script + "ufw --force enable\n"


# -- the deploy floor (scenario deploy-1) --------------------------------------------------------

@dataclass(frozen=True)
class AppTarget:
    """What a deploy floor needs of one host's app: its settings and its upstream's options."""

    settings: AppSettings
    server_options: str


def app_target(job: HostJob) -> AppTarget:
    settings = read_app(job.variables)
    return AppTarget(settings, server_options(job.variables, settings.name))


def deploy_script(app: AppTarget, version: str) -> str:
    """A hand-written rolling deploy of ``version``: per instance the work of roles/app/move.py
    and no less (the same 0.5 s health polling, the same nginx reload wait, the same drain
    check, the unit enabled for boot and the old one disabled), and nothing a deploy does for
    safety beyond it: no preflight, no lock, no history, no transient unit, no log lines on a
    failure, no server list put back. Any failure ends the script with exit 1."""
    settings, layout = app.settings, Layout(app.settings.name)
    moves = "".join(f"move {instance} {' '.join(map(str, settings.ports_of(instance)))}\n"
                    for instance in settings.instances)
    return f"""set -u
state={shlex.quote(layout.state)}; servers={shlex.quote(layout.servers)}; version={version}
fail() {{ echo "floor deploy: instance $inst: $*" >&2; exit 1; }}
move() {{
  inst=$1; cur=
  [ -s "$state/live/$inst" ] && read -r cur v < "$state/live/$inst"
  if [ "$cur" = "$2" ]; then new=$3; else new=$2; fi
{_start_new_slot(settings)}{_switch_servers(app)}{_retire_old_slot(settings)}}}
{moves}"""


def _start_new_slot(settings: AppSettings) -> str:
    """move()'s first part: the version's unit started on the new port, polled until healthy."""
    return f"""  docker image inspect "{settings.image}:$version" >/dev/null 2>&1 || fail "no image"
  printf 'IMAGE={settings.image}:%s\\nVERSION=%s\\n' "$version" "$version" > "$state/slots/$new.env"
  systemctl start "{settings.name}@$new.service" || fail "did not start"
  deadline=$(( $(date +%s) + {settings.health_timeout} ))
  while :; do
    code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 \\
      "http://127.0.0.1:$new{settings.health_path}") || code=none
    case "$code" in 2??) break;; esac
    [ "$(date +%s)" -lt "$deadline" ] || fail "not healthy on port $new: $code"
    sleep 0.5
  done
"""


def _switch_servers(app: AppTarget) -> str:
    """move()'s middle: the server list with the new port, nginx reloaded and waited for."""
    settings = app.settings
    header = HEADER.format(app=settings.name).rstrip("\n")
    instances = " ".join(map(str, settings.instances))
    return f"""  {{ printf '%s\\n' {shlex.quote(header)}
    for i in {instances}; do
      p=$i
      if [ "$i" = "$inst" ]; then p=$new
      elif [ -s "$state/live/$i" ]; then read -r p v < "$state/live/$i"; fi
      echo "{server_line("$p", app.server_options)}"
    done; }} > "$servers"
  nginx -t -q || fail "nginx -t refused the servers"
  {{ {NGINX_WORKERS}; }} > {NGINX_WORKERS_BEFORE_RELOAD}
  systemctl reload nginx.service || fail "nginx did not reload"
  n=0; until ( {NGINX_RELOADED} ); do
    n=$((n + 1)); [ $n -lt 300 ] || fail "nginx did not finish reloading"; sleep 0.1
  done
"""


def _retire_old_slot(settings: AppSettings) -> str:
    """move()'s end: the live file and boot unit moved over, the old port drained and stopped."""
    return f"""  printf '%s %s\\n' "$new" "$version" > "$state/live/$inst"
  systemctl enable --quiet "{settings.name}@$new.service"
  if [ -n "$cur" ] && [ "$cur" != "$new" ]; then
    hex=$(printf '%04X' "$cur"); end=$(( $(date +%s) + {settings.drain_timeout} ))
    while grep -Eq "^ *[0-9]+: [0-9A-F]+:[0-9A-F]{{4}} [0-9A-F]+:$hex 01 " \\
        /proc/net/tcp /proc/net/tcp6 2>/dev/null && [ "$(date +%s)" -lt "$end" ]; do
      sleep 0.2
    done
    systemctl stop "{settings.name}@$cur.service"
    systemctl disable --quiet "{settings.name}@$cur.service"
  fi
"""


_SERVERS_MARK = "==servers=="
_UNITS_MARK = "==units=="


def deployed_state_script(app: AppTarget) -> str:
    """Read-only: each instance's live file and the health of its live port, the server list,
    the app's active and enabled instance units (judged by ``deployed_problems``)."""
    settings, layout = app.settings, Layout(app.settings.name)
    lines = [f"if [ -s {layout.live(instance)} ]; then read -r port version < "
             f"{layout.live(instance)}; code=$(curl -s -o /dev/null -w '%{{http_code}}' "
             f"--max-time 2 \"http://127.0.0.1:$port{settings.health_path}\") || code=000; "
             f"echo \"live {instance} $port $version $code\"; fi"
             for instance in settings.instances]
    lines += [f"echo {_SERVERS_MARK}", f"cat {layout.servers}", f"echo {_UNITS_MARK}",
              f"for unit in $(systemctl list-units --plain --no-legend --state=active "
              f"'{settings.name}@*' | awk '{{print $1}}'); do "
              "echo \"$unit $(systemctl is-enabled \"$unit\" 2>/dev/null)\"; done",
              f"for link in /etc/systemd/system/*.wants/{settings.name}@*.service; do "
              "[ -e \"$link\" ] && echo \"link ${link##*/}\"; done; true"]
    return "\n".join(lines) + "\n"


def parse_live_states(output: str) -> dict[int, tuple[int, str, str]]:
    """instance -> (live port, version, health code) from ``deployed_state_script``'s output."""
    states = {}
    for line in output.partition(_SERVERS_MARK + "\n")[0].splitlines():
        parts = line.split()
        if len(parts) == 5 and parts[0] == "live" and parts[1].isdigit() and parts[2].isdigit():
            states[int(parts[1])] = (int(parts[2]), parts[3], parts[4])
    return states


def deployed_problems(app: AppTarget, version: str, before: Mapping[int, int],
                      output: str) -> list[str]:
    """What is wrong after a deploy of ``version``, from ``deployed_state_script``'s output:
    every instance must serve it, healthy, on the port it did not serve on before (``before``:
    instance -> port); the server list must be what the app role renders from the live ports;
    exactly the live ports' units must run and be enabled for boot."""
    settings = app.settings
    states = parse_live_states(output)
    servers, _, units_part = output.partition(_SERVERS_MARK + "\n")[2].partition(
        _UNITS_MARK + "\n")
    problems = []
    for instance, (port, live_version, code) in states.items():
        if live_version != version or not code.startswith("2"):
            problems.append(f"instance {instance}: {live_version} on {port}, health {code}")
        if before.get(instance) == port:
            problems.append(f"instance {instance} did not move (still on {port})")
    missing = sorted(set(settings.instances) - set(states))
    if missing:
        problems.append(f"no live file for {missing}")
    ports = {instance: state[0] for instance, state in states.items()}
    if servers != render_servers(settings, ports, app.server_options):
        problems.append(f"server list is {servers!r}")
    wanted = {f"{settings.name}@{port}.service" for port in ports.values()}
    lines = [line.split() for line in units_part.splitlines() if line.strip()]
    running = {parts[0]: parts[1:] for parts in lines if parts[0] != "link"}
    links = {parts[1] for parts in lines if parts[0] == "link" and len(parts) == 2}
    if set(running) != wanted or any(state != ["enabled"] for state in running.values()):
        problems.append(f"active units {running}, wanted {sorted(wanted)} enabled")
    if links != wanted:
        problems.append(f"units enabled for boot {sorted(links)}, wanted {sorted(wanted)}")
    return problems
