"""Files, templates and directories with this content, owner and mode, compared by checksum.

Each step reads its path with path_state's probe (grouped with the other paths' unless it needs
the content for a diff), decides on the controller, and writes with file_writes' atomic,
validated, backed-up write; a removed file goes to the backup tree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from provisioner.change import unified_diff
from provisioner.commands import quote
from provisioner.host import Host
from provisioner.ops.backups import move_to_backups_command, safeguard_save
from provisioner.ops.file_writes import (
    DIRECTORY_MODE,
    DesiredFile,
    created_reason,
    make_directories_command,
    write_file_action,
)
from provisioner.ops.path_state import (
    FileState,
    directories_above,
    grouped_path_probe,
    missing_directories,
    parse_path_state,
    probe_path,
)
from provisioner.ops.secret_store import (
    reveal_host_secrets,
    secret_reads_probe,
    split_secret_reads,
)
from provisioner.secrets.host_store import HostSecret, host_secrets_in
from provisioner.secrets.values import MASK, Secret, holds_secret
from provisioner.step import Plan, Probed, ProbeUnreadable, Safeguard, Step


def plan_file_attributes(current: FileState, owner: str, group: str, mode: int) -> list[str]:
    """Human reasons for every owner/group/mode difference (empty when all match)."""
    reasons = []
    if (current.owner, current.group) != (owner, group):
        reasons.append(f"owner {current.owner}:{current.group} -> {owner}:{group}")
    if current.mode != mode:
        reasons.append(f"mode {current.mode:04o} -> {mode:04o}")
    return reasons


def plan_file(current: FileState | None, desired: DesiredFile, show_diff: bool = False,
              save: str = "", missing: Sequence[str] = ()) -> Plan:
    """Decide what a file needs; pure, so every branch is unit-tested.

    ``missing`` names the directories above an absent file that its probe found missing; the
    write creates them, and the reason says so (in check mode too).
    """
    if current is not None and current.kind not in ("regular file", "regular empty file"):
        return Plan(f"{desired.path} is a {current.kind}, refusing to replace it",
                    action="echo 'refusing to replace a non-file' >&2; exit 1")
    if desired.content is None:
        if current is None:
            return Plan(f"{desired.path} is missing and no content was given",
                        action=f"echo {quote(desired.path + ' does not exist')} >&2; exit 1")
        reasons = plan_file_attributes(current, desired.owner, desired.group, desired.mode)
        return _attributes_plan(desired, reasons, save)
    wanted_sha = hashlib.sha256(desired.content).hexdigest()
    if current is None or current.sha256 != wanted_sha:
        diff = unified_diff(desired.path, current.content if current else None,
                            desired.content) if show_diff else None
        reason = created_reason(missing) if current is None else "content changed"
        return Plan(reason, action=save + write_file_action(desired), diff=diff,
                    all_or_nothing=True)
    reasons = plan_file_attributes(current, desired.owner, desired.group, desired.mode)
    return _attributes_plan(desired, reasons, save)



def _attributes_plan(desired: DesiredFile, reasons: list[str], save: str) -> Plan:
    if not reasons:
        return Plan("already as desired")
    action = (f"{save}chown {quote(desired.owner + ':' + desired.group)} {quote(desired.path)}"
              f" && chmod {desired.mode:04o} {quote(desired.path)}")
    return Plan(", ".join(reasons), action=action)



def ensure_file(host: Host, path: str, content: str | bytes | None = None, *,
                owner: str = "root", group: str = "root", mode: int = 0o644,
                validate: str | None = None, notify: Sequence[str] = (),
                safeguard: Safeguard | None = None, label: str = "",
                directory_mode: int = DIRECTORY_MODE) -> Step:
    """A file with this content (or only these attributes when content is None); missing
    directories above it are created root-owned with ``directory_mode``."""
    data = content.encode() if isinstance(content, str) else content
    desired = DesiredFile(path, data, owner, group, mode, validate, directory_mode)
    save = safeguard_save(safeguard.name, path) if safeguard else ""
    show_diff = host.show_diff

    def decide(probed: Probed) -> Plan:
        return plan_file(parse_path_state(probed.output), desired, show_diff, save,
                         missing_directories(path, probed.output))

    return Step(label or f"file {path}", probe_path(path, with_content=show_diff), decide,
                tuple(notify), safeguard, host.secrets, writes_only=path,
                grouped=grouped_path_probe(path, with_content=show_diff))


def ensure_template(host: Host, path: str, template: str, *, owner: str = "root",
                    group: str = "root", mode: int = 0o644, validate: str | None = None,
                    notify: Sequence[str] = (), safeguard: Safeguard | None = None,
                    label: str = "", directory_mode: int = DIRECTORY_MODE,
                    **extra: object) -> Step:
    """A file rendered from one of the role's Jinja2 templates.

    A template reading a host secret (``{secret: host:NAME}``) is rendered when the step
    decides, from the value its probe read on the host (template_reading_host_secrets)."""
    variables = {**host.vars, **extra}
    reading = {name: variables[name] for name in host.template_reads(template)
               if host_secrets_in(variables.get(name))}
    if reading:
        desired = DesiredFile(path, None, owner, group, mode, validate, directory_mode)
        return template_reading_host_secrets(host, desired, template, reading, extra,
                                             notify=notify, safeguard=safeguard,
                                             label=label or f"template {path}")
    content = host.render(template, **extra)
    step = ensure_file(host, path, content, owner=owner, group=group, mode=mode,
                       validate=validate, notify=notify, safeguard=safeguard,
                       label=label or f"template {path}", directory_mode=directory_mode)
    marks = secret_marks(host, template, extra)
    if not marks or not host.show_diff:
        return step
    lines = _secret_lines(content, host.render(template, **{**extra, **marks}))
    return replace(step, decide=lambda probed: mask_secret_lines(step.decide(probed), lines))


#: Stands for every secret in a second render of a template that reads one: the lines that
#: differ from the real render are the ones a secret went into, in whatever form a filter
#: gave it (urlencode, upper, a slice), which masking by value cannot recognise.
SECRET_MARKER = "provisioner-secret-marker"


def secret_marks(host: Host, template: str, extra: Mapping[str, object]) -> dict[str, Any]:
    """Each variable the template reads that holds a secret, with SECRET_MARKER in its place.

    host.vars carries the inventory's secrets revealed (the host must get them), so those are
    found in the inventory's own values; host secrets stay references in both."""
    marks = {}
    for name in host.template_reads(template):
        value = extra.get(name, host.config.vars.get(name, host.vars.get(name)))
        if holds_secret(value):
            marks[name] = _marked(value)
    return marks


def _marked(value: Any) -> Any:
    """The value with every secret inside it replaced by SECRET_MARKER."""
    if isinstance(value, Secret | HostSecret):
        return SECRET_MARKER
    if isinstance(value, Mapping):
        return {key: _marked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_marked(item) for item in value)
    return value


def _secret_lines(real: str, marked: str) -> frozenset[str]:
    return frozenset(real.splitlines()) - frozenset(marked.splitlines())


def mask_secret_lines(plan: Plan, secret_lines: frozenset[str]) -> Plan:
    """The plan's diff with each line a secret went into shown as the mask, and every removed
    line too: the old side may hold an earlier value in any form."""
    if not plan.diff:
        return plan
    shown = []
    for line in plan.diff.splitlines(keepends=True):
        sign, text = line[:1], line[1:].rstrip("\n")
        if line.startswith(("---", "+++")) or sign not in "+- ":
            shown.append(line)
        elif sign == "-" or text in secret_lines:
            shown.append(f"{sign}{MASK}\n")
        else:
            shown.append(line)
    return replace(plan, diff="".join(shown))


def template_reading_host_secrets(host: Host, desired: DesiredFile, template: str,
                                  reading: Mapping[str, Any], extra: Mapping[str, object], *,
                                  notify: Sequence[str], safeguard: Safeguard | None,
                                  label: str) -> Step:
    """A template step whose probe also reads the host secrets the template uses, rendered in
    decide with their values; the Plan hands them on so the engine masks them (the diff too)."""
    names = list(dict.fromkeys(ref.name for value in reading.values()
                               for ref in host_secrets_in(value)))
    save = safeguard_save(safeguard.name, desired.path) if safeguard else ""
    show_diff, path = host.show_diff, desired.path
    marks = secret_marks(host, template, extra)
    # The marked render reads no secret: made once, not on every decision.
    marked = host.render(template, **{**extra, **marks}) if show_diff else ""

    def decide(probed: Probed) -> Plan:
        own, reads = split_secret_reads(probed.output)
        missing = [name for name in names if name not in reads]
        if missing:
            raise ProbeUnreadable(f"host secret {missing[0]} is not on the host yet")
        values = {var: reveal_host_secrets(value, reads) for var, value in reading.items()}
        text = host.render(template, **{**extra, **values})
        plan = plan_file(parse_path_state(own), replace(desired, content=text.encode()),
                         show_diff, save, missing_directories(path, own))
        if show_diff:
            plan = mask_secret_lines(plan, _secret_lines(text, marked))
        return replace(plan, secrets=tuple(reads[name] for name in names))

    probe = probe_path(path, with_content=show_diff) + "\n" + secret_reads_probe(names)
    return Step(label, probe, decide, tuple(notify), safeguard, host.secrets, writes_only=path)


def ensure_absent(host: Host, path: str, *, notify: Sequence[str] = (),
                  safeguard: Safeguard | None = None, label: str = "") -> Step:
    """No file at path (the removed file is kept in the 0700 backup tree, mode unchanged)."""
    action = (safeguard_save(safeguard.name, path) if safeguard else "") + \
        move_to_backups_command(path)

    def decide(probed: Probed) -> Plan:
        if parse_path_state(probed.output) is None:
            return Plan("already absent")
        return Plan("removed", action=action)

    return Step(label or f"absent {path}", probe_path(path), decide, tuple(notify), safeguard,
                writes_only=path, grouped=grouped_path_probe(path))


def ensure_directory(host: Host, path: str, *, owner: str = "root", group: str = "root",
                     mode: int = 0o755, label: str = "") -> Step:
    """A directory with this owner and mode; missing parents are created root-owned, 0755
    (not with the umask, which a hardened host sets to 027)."""
    def decide(probed: Probed) -> Plan:
        current = parse_path_state(probed.output)
        owner_group = quote(f"{owner}:{group}")
        if current is None:
            parents = make_directories_command(directories_above(path))
            return Plan(created_reason(missing_directories(path, probed.output)),
                        action=f"set -e\n{parents}mkdir -m {mode:04o} {quote(path)}\n"
                        f"chown {owner_group} {quote(path)}\nchmod {mode:04o} {quote(path)}")
        if current.kind != "directory":
            return Plan(f"{path} is a {current.kind}, not a directory",
                        action=f"echo {quote(path + ' is not a directory')} >&2; exit 1")
        reasons = plan_file_attributes(current, owner, group, mode)
        if not reasons:
            return Plan("already as desired")
        return Plan(", ".join(reasons), action=f"chown {owner_group} {quote(path)} && "
                    f"chmod {mode:04o} {quote(path)}")

    return Step(label or f"directory {path}", probe_path(path), decide, writes_only=path,
                grouped=grouped_path_probe(path))

