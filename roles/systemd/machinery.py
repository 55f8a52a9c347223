"""The steps that make a list of UnitSpecs true on a host: the API the systemd role and the app
role share.

    from roles.systemd.machinery import restart_handler, unit_steps
    HANDLERS = (restart_handler("app"),)
    def steps(host): yield from unit_steps(host, specs, owner="app")

In order: each unit's system account; the owner's manifest (manifest.py: a unit someone else
wrote is refused, one the owner no longer wants is stopped, disabled and removed); each
environment file, 0600, its secrets read on the host in the step's own probe; all unit files as
one config set (ops/config_set.py) that goes live only when ``systemd-analyze verify`` and
``systemd-analyze calendar`` accept the whole staged tree, followed by ``systemctl
daemon-reload`` only when a file changed; each unit enabled and started.

Restarts: a unit whose file or environment changes while it runs gets a marker in
/var/lib/provisioner/units/<owner>/restart, written by the same action as the change, and the
owner's handler restarts the marked units once after the role (``try-restart``) and removes each
marker only after its restart worked. So a unit is restarted when, and only when, something it
reads changed; a new unit is simply started; a run that dies before the handler leaves the
markers (and the handler's record) for the next run.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

from provisioner.commands import join, quote
from provisioner.host import Host
from provisioner.ops.config_set import (
    build_config_set,
    ensure_config_set,
    parse_config_set,
    set_changes,
)
from provisioner.ops.files import ensure_absent, ensure_directory, ensure_template
from provisioner.ops.systemd import ensure_service
from provisioner.step import Handler, Plan, Probed, Step
from roles.systemd.manifest import UNIT_DIR, manifest_step, restart_dir
from roles.systemd.render import ENVIRONMENT_DIR, environment_file, unit_files
from roles.systemd.units import UnitSpec

OWNER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
TEMPLATES = Path(__file__).resolve().parent / "templates"
ENVIRONMENT_TEMPLATE = "etc/provisioner/units/environment.env.j2"
#: The names unit_steps passes to the environment template on each render.
TEMPLATE_ARGUMENTS = {ENVIRONMENT_TEMPLATE: ("environment", "unit_name")}
#: Checks staged unit files: systemd-analyze verify, strict about warnings, and calendar.
VERIFY_PROGRAM = "/usr/local/lib/provisioner/verify-units"
VERIFY_TEMPLATE = "usr/local/lib/provisioner/verify-units.j2"


def restart_handler_name(owner: str) -> str:
    return f"{owner}:restart-changed"


def restart_handler(owner: str) -> Handler:
    """Handler: ``try-restart`` each unit marked as changed while it ran, then drop its marker.

    A template's marker (``app@.service``) restarts every running instance of it."""
    directory = quote(restart_dir(owner))
    action = (f'for f in {directory}/*; do [ -e "$f" ] || continue; u=${{f##*/}}; '
              'case $u in *@.*) u="${u%%@.*}@*.${u##*.}" ;; esac; '
              'systemctl try-restart -- "$u" || exit 1; rm -f -- "$f"; done')
    return Handler(restart_handler_name(owner), action)


def unit_steps(host: Host, specs: Sequence[UnitSpec], owner: str) -> Iterator[Step]:
    """Every step for these units (see the module docstring); ``owner`` names the manifest
    and the handler (restart_handler(owner) must be among the calling role's HANDLERS)."""
    check_specs(specs, owner)
    yield from account_steps(specs)
    yield manifest_step(owner, specs)
    with_environment = [spec for spec in specs if spec.environment]
    if with_environment:
        yield ensure_directory(host, ENVIRONMENT_DIR, mode=0o700)
    bound = host.for_role(TEMPLATES)
    for spec in specs:
        if spec.environment:
            yield environment_step(bound, spec, owner)
        else:  # one its environment was taken from: no secret left at rest for nothing
            yield ensure_absent(host, f"{ENVIRONMENT_DIR}/{spec.name}.env")
    if specs:
        yield verify_program_step(bound)
        yield units_step(host, specs, owner)
    for spec in specs:
        for unit in spec.started_units:
            yield ensure_service(host, unit, label=f"service {unit} enabled and running")
        if spec.timer:
            # A service that became a timer's job keeps its old boot-time link otherwise.
            yield ensure_service(host, spec.service_unit, enabled=False, running=None,
                                 label=f"service {spec.service_unit} not enabled (its timer "
                                       "starts it)")


def check_specs(specs: Sequence[UnitSpec], owner: str) -> None:
    """ValueError for what a calling role got wrong: an owner that cannot name a directory,
    or two specs of one unit (the second would silently win)."""
    if not OWNER_NAME.fullmatch(owner):
        raise ValueError(f"owner {owner!r} must be a role's name (lower-case letters, digits, _)")
    names = [spec.name for spec in specs]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"units given twice: {', '.join(twice)}")


def account_steps(specs: Iterable[UnitSpec]) -> Iterator[Step]:
    """A system account (no login, no home) for each unit user that should have one."""
    seen: set[tuple[str, str]] = set()
    for spec in specs:
        account = (spec.user, spec.group_name)
        if spec.create_user and spec.user != "root" and account not in seen:
            seen.add(account)
            yield system_account_step(*account)


def plan_system_account(user: str, group: str, output: str) -> Plan:
    """useradd for a missing system user (its group made too, or joined when it exists)."""
    passwd, _, groups = output.partition("==\n")
    if passwd.startswith(f"{user}:"):
        return Plan("exists")
    command = ["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
               "--shell", "/usr/sbin/nologin"]
    action = ""
    if groups.startswith(f"{group}:"):
        command += ["--gid", group]
    elif group == user:
        command.append("--user-group")
    else:
        action = join("groupadd", "--system", group) + " && "
        command += ["--gid", group]
    return Plan(f"created (system user, group {group}, no login)",
                action=action + join(*command, user))


def system_account_step(user: str, group: str) -> Step:
    def decide(probed: Probed) -> Plan:
        return plan_system_account(user, group, probed.output)

    probe = f"getent passwd {quote(user)} || true; echo ==; getent group {quote(group)} || true"
    return Step(f"system user {user}", probe, decide)


def environment_step(host: Host, spec: UnitSpec, owner: str) -> Step:
    """The unit's environment file (root's, 0600); a change while it runs marks it."""
    path = environment_file(spec)
    assert path is not None
    step = ensure_template(host, path, ENVIRONMENT_TEMPLATE, mode=0o600,
                           notify=[restart_handler_name(owner)],
                           label=f"environment {path} of {spec.service_unit}",
                           environment=spec.environment, unit_name=spec.service_unit)
    return _marking(step, () if spec.timer else (spec.service_unit,), owner)


def verify_command(specs: Sequence[UnitSpec]) -> str:
    """The config set's check: VERIFY_PROGRAM on every unit file and OnCalendar expression."""
    files = [f"{UNIT_DIR}/{name}" for spec in specs for name in spec.unit_files]
    calendars = [expression for spec in specs if spec.timer
                 for expression in spec.timer.on_calendar]
    return join(VERIFY_PROGRAM, *files, *(["--", *calendars] if calendars else []))


def verify_program_step(host: Host) -> Step:
    """The checker itself, a small sh script (the minimal image has no python)."""
    return ensure_template(host, VERIFY_PROGRAM, VERIFY_TEMPLATE, mode=0o755,
                           label=f"program {VERIFY_PROGRAM} (systemd-analyze verify, strict)")


def units_step(host: Host, specs: Sequence[UnitSpec], owner: str,
               unit_dir: str = UNIT_DIR) -> Step:
    """All unit files as one config set, checked by verify_command, reloaded when changed
    (``unit_dir``: only the unit tests give another)."""
    files = {f"{unit_dir}/{name}": content for spec in specs
             for name, content in unit_files(spec, owner).items()}
    names = [name for spec in specs for name in spec.unit_files]
    check = verify_command(specs)
    config = build_config_set(unit_dir, files, check)
    step = ensure_config_set(host, unit_dir, files, check=check,
                             notify=[restart_handler_name(owner)],
                             label=f"units {', '.join(sorted(names))} in {unit_dir} "
                                   "(systemd-analyze verify) [controls §11]")
    decide = step.decide

    def decide_and_mark(probed: Probed) -> Plan:
        plan = decide(probed)
        if plan.action is None:
            return plan
        changes = set_changes(config, parse_config_set(probed.output, config))
        names = [change.path.rsplit("/", 1)[1] for change in changes]
        action = f"{plan.action}\nsystemctl daemon-reload\n{marks_command(owner, names)}"
        # A unit that had no file cannot be running: only new files, nothing to restart.
        notify = () if not any(change.existed for change in changes) else None
        return replace(plan, action=action, notify=notify)

    return replace(step, decide=decide_and_mark)


def _marking(step: Step, units: Sequence[str], owner: str) -> Step:
    """The step with a restart marker after its action for each of ``units`` that runs; its
    action then changes more than its path, so it is no write the walk may batch."""
    decide = step.decide

    def marked(probed: Probed) -> Plan:
        plan = decide(probed)
        if plan.action is None:
            return plan
        return replace(plan, action=f"{plan.action}\n{marks_command(owner, units)}")

    return replace(step, decide=marked, writes_only=None)


def marks_command(owner: str, units: Iterable[str]) -> str:
    """Shell leaving a marker for each of these units that runs (any instance, for a template)."""
    directory = quote(restart_dir(owner))
    lines = [f"( umask 077 && mkdir -p {directory} )"]
    for unit in units:
        if unit.endswith("@.service"):
            running = (f"systemctl list-units --state=active --plain --no-legend -- "
                       f"{quote(unit.replace('@.', '@*.'))} | grep -q .")
        else:
            running = f"systemctl is-active --quiet -- {quote(unit)}"
        lines.append(f"if {running}; then : > {directory}/{quote(unit)}; fi")
    return "\n".join(lines) + "\n"

