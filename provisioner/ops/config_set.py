"""Config sets: several files of one service's configuration, checked as one tree, swapped together.

A service reads its configuration as a tree (nginx.conf and the conf.d sites it includes, jail.local
and jail.d): each file may look valid alone while the set is not, and a reload between two single
file writes loads half a change. A config set is one Step for all of them. Its probe reads every
file with one stat and one sha256sum (path_state.probe_paths) and lists the managed drop-in
directories with shell builtins; the pure plan_config_set names each file that changes, with its
unified diff. The action copies the service's tree (``root``, e.g. /etc/nginx) into a staging
directory beside it, applies every change there (a stale drop-in is deleted from the copy), runs
the service's own checker on that whole staged tree, and only then takes the backups and renames
the changed files into place. A refused set leaves every live file as it was and fails the step
with the checker's own words as the last lines of its output, which is what the walk shows.

How the checker sees the staged tree: by default in a private mount namespace (``unshare
--mount --propagation private``) where the staged copy is bind-mounted over ``root``, so the
checker reads the new tree at the live paths. A path argument cannot do this: Debian's
nginx.conf includes /etc/nginx/conf.d/*.conf and sshd_config includes /etc/ssh/sshd_config.d
by absolute path, so ``nginx -t -c <copy>`` checks the copy's top file with the LIVE drop-ins (a
broken new site passes, a stale one still counts). In the namespace the checker's messages name
the real paths, every other process (the running service too) keeps seeing the live tree, and
the mount ends with the checker's process, even when the connection dies during the check.
``private`` propagation is explicit because systemd makes / shared: the bind must not leak out.
Checked in the sandbox's systemd-nspawn machines, Debian 12 and 13, standard and minimal (they
keep CAP_SYS_ADMIN; / is shared there, as on any systemd host) and on a Docker root (private).
util-linux is essential and mount of priority required, so both are in every image debootstrap
makes; an action that finds no ``unshare`` or ``mount`` says so before changing anything. A
checker that takes the tree's path (``fail2ban-client -c {staged} -t``) may say so with
``{staged}``: it then runs on the staged copy directly (its messages name the copy's paths).

Why the swap is safe: the staging directory is a sibling of ``root``, checked to be on the
filesystem of every target directory, so each swap is a rename. The check and the backups come
first (a hang-up until then removes the copy and changes nothing); the renames come last, in one
burst that ignores SIGHUP and SIGPIPE, so a dying connection cannot stop it halfway. Each old
file is hard-linked into the staging directory first: when a rename fails, those already made
are undone by rename. Deeper paths move first (included files before their includers), stale
ones last; a reload by someone else within that burst could still see a mix, which no per-file
rename avoids. A managed directory holds the set's files only: any other entry but a
subdirectory (dot files too) is removed.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from provisioner.change import unified_diff
from provisioner.commands import quote, write_bytes_command
from provisioner.host import Host
from provisioner.ops.backups import backup_command, safeguard_save
from provisioner.ops.file_writes import (
    DesiredFile,
    created_reason,
    make_directories_command,
    undo_directories_command,
)
from provisioner.ops.files import plan_file_attributes
from provisioner.ops.path_state import (
    FileState,
    directories_above,
    missing_directories,
    parse_path_state,
    probe_paths,
    split_paths_output,
)
from provisioner.step import Plan, Probed, ProbeUnreadable, Refused, Safeguard, Step

#: In a checker command, the staged tree's path; without it the checker runs in a namespace.
STAGED = "{staged}"
_REGULAR = ("regular file", "regular empty file")
_END = "="  # ends a record list in the probe's output: no path (absolute) nor base64 is "="


@dataclass(frozen=True)
class ConfigFile:
    """One file of a set, for when it needs other attributes than root:root 0644."""

    content: str | bytes
    owner: str = "root"
    group: str = "root"
    mode: int = 0o644


@dataclass(frozen=True)
class ConfigSet:
    """The desired set: files below ``root``, the drop-in directories it owns, its checker."""

    root: str
    files: tuple[DesiredFile, ...]
    check: str
    managed: tuple[str, ...] = ()

    @property
    def paths(self) -> tuple[str, ...]:
        return tuple(desired.path for desired in self.files)


@dataclass(frozen=True)
class SetState:
    """What the probe found: each file, what is missing above it, the drop-ins, the contents."""

    files: Mapping[str, FileState | None]
    missing: Mapping[str, tuple[str, ...]]
    entries: tuple[str, ...]
    contents: Mapping[str, bytes]


@dataclass(frozen=True)
class FileChange:
    """One path the action changes; ``desired`` None means it is removed."""

    path: str
    reason: str
    desired: DesiredFile | None
    existed: bool = True
    content_changed: bool = True


def build_config_set(root: str, files: Mapping[str, str | bytes | ConfigFile], check: str,
                     managed: Sequence[str] = ()) -> ConfigSet:
    """A ConfigSet, refusing what the action could not stage: paths outside ``root``."""
    root = posixpath.normpath(root)
    if not root.startswith("/") or root == "/":
        raise ValueError(f"config set root {root!r} must be an absolute directory below /")
    desired = []
    for path, given in files.items():
        item = given if isinstance(given, ConfigFile) else ConfigFile(given)
        data = item.content.encode() if isinstance(item.content, str) else item.content
        desired.append(DesiredFile(_below(root, path), data, item.owner, item.group, item.mode))
    if not desired:
        raise ValueError(f"config set {root} has no files")
    directories = tuple(posixpath.normpath(directory) for directory in managed)
    for directory in directories:
        if directory != root:
            _below(root, directory)
    return ConfigSet(root, tuple(desired), check, directories)


def _below(root: str, path: str) -> str:
    normal = posixpath.normpath(path)
    if not normal.startswith(root + "/"):
        raise ValueError(f"{path!r} is not below the config set's root {root}")
    return normal


def probe_config_set(config: ConfigSet, with_content: bool = False) -> str:
    """Read-only shell: the managed directories' entries, then (diff mode) the contents, then
    probe_paths for every file, each record list ended by ``=``.

    The listing and the content loop are builtins, so a converged set costs two process starts
    (stat, sha256sum) however many files it holds; contents (one base64 each) only in diff mode.
    """
    globs = " ".join(f"{quote(d)}/* {quote(d)}/.[!.]* {quote(d)}/..?*" for d in config.managed)
    listing = (f"for f in {globs}; do if [ -L \"$f\" ] || {{ [ -e \"$f\" ] && [ ! -d \"$f\" ]; }};"
               " then printf '%s\\0' \"$f\"; fi; done; ") if globs else ""
    contents = ""
    if with_content:
        read = ('if [ -f "$p" ] && [ ! -L "$p" ]; then printf \'%s\\0\' "$p"; '
                'base64 -w0 -- "$p"; printf \'\\0\'; fi')
        paths = " ".join(quote(path) for path in config.paths)
        contents = f"for p in {paths}; do {read}; done; "
        if globs:
            desired = "|".join(quote(path) for path in config.paths)
            contents += (f"for p in {globs}; do case $p in {desired}) continue ;; esac; "
                         f"{read}; done; ")
    return (f"{listing}printf '{_END}\\0'; {contents}printf '{_END}\\0'; "
            f"{probe_paths(config.paths)}")


def parse_config_set(output: str, config: ConfigSet) -> SetState:
    """probe_config_set's output -> SetState; ProbeUnreadable when its structure is cut off.

    A content record is base64, never ``=`` alone, so the first ``=`` after the listing ends
    the contents too."""
    records = output.split("\0")
    listed = _index(records, 0, config)
    read = _index(records, listed + 1, config)
    pairs = records[listed + 1:read]
    contents = {path: base64.b64decode(data) for path, data in zip(pairs[0::2], pairs[1::2],
                                                                    strict=True)}
    answers = split_paths_output("\0".join(records[read + 1:]), config.paths)
    return SetState({path: parse_path_state(answer) for path, answer in answers.items()},
                    {path: tuple(missing_directories(path, answer))
                     for path, answer in answers.items()}, tuple(records[:listed]), contents)


def _index(records: list[str], start: int, config: ConfigSet) -> int:
    try:
        return records.index(_END, start)
    except ValueError:
        raise ProbeUnreadable(f"the probe of config set {config.root} was cut off") from None


def set_changes(config: ConfigSet, state: SetState) -> list[FileChange]:
    """Every path that differs, deepest first, stale drop-ins last."""
    changes = []
    for desired in config.files:
        current = state.files.get(desired.path)
        wanted = hashlib.sha256(desired.content or b"").hexdigest()
        content_changed = current is None or current.sha256 != wanted
        reasons = [created_reason(state.missing.get(desired.path, ()))] if current is None else \
            (["content changed"] if content_changed else []) + plan_file_attributes(
                current, desired.owner, desired.group, desired.mode)
        if reasons:
            changes.append(FileChange(desired.path, ", ".join(reasons), desired,
                                      current is not None, content_changed))
    changes.sort(key=lambda change: -change.path.count("/"))
    stale = sorted(set(state.entries) - set(config.paths))
    return changes + [FileChange(path, "removed (not in the set)", None) for path in stale]


def plan_config_set(config: ConfigSet, state: SetState, show_diff: bool = False,
                    safeguard: str | None = None) -> Plan:
    """Decide what the set needs; pure. A path that is no regular file is refused: staging
    would write through a link, and replacing a directory is not a config set's to decide."""
    for path, current in state.files.items():
        if current is not None and current.kind not in _REGULAR:
            raise Refused(f"{path} is a {current.kind}, not a regular file: the config set "
                          f"{config.root} does not replace it")
    changes = set_changes(config, state)
    if not changes:
        stale = f", nothing stale in {', '.join(config.managed)}" if config.managed else ""
        return Plan(f"all {len(config.files)} files as desired{stale}")
    reason = "; ".join(f"{change.path} {change.reason}" for change in changes)
    diff = "".join(_diff(change, state) for change in changes) if show_diff else None
    return Plan(reason, action=config_set_action(config, changes, safeguard), diff=diff or None,
                all_or_nothing=True)


def _diff(change: FileChange, state: SetState) -> str:
    before = state.contents.get(change.path)
    if change.desired is None:
        diff = unified_diff(change.path, before or b"", b"")  # empty for an empty file
        return diff.replace(f"+++ {change.path} (desired)\n", "+++ /dev/null\n", 1) or \
            f"--- {change.path} (current)\n+++ /dev/null\n"
    if not change.content_changed:
        return ""  # attributes only: nothing to show line by line
    return unified_diff(change.path, before if change.existed else None,
                        change.desired.content or b"")


def config_set_action(config: ConfigSet, changes: Sequence[FileChange],
                      safeguard: str | None = None) -> str:
    """Shell that stages, checks, backs up and swaps the changes; see the module docstring."""
    created = sorted({directory for change in changes
                      if change.desired is not None and not change.existed
                      for directory in directories_above(change.path)},
                     key=lambda directory: (directory.count("/"), directory))
    return "".join([
        _prologue(changes, created),
        _require_tools(config),
        make_directories_command(created),
        _stage(config, changes),
        _same_filesystem(config, changes),
        _validate(config),
        _keep_old(changes, safeguard),
        _swap(config, changes),
    ])


def _prologue(changes: Sequence[FileChange], created: Sequence[str]) -> str:
    flags = "".join(f" m{index}=" for index in range(len(created)))
    swapped = "".join(f" s{index}=" for index in range(len(changes)))
    return (f"set -e\nstage= tree= kept={flags}{swapped}\n"
            f"cleanup() {{ if [ -n \"$stage\" ]; then rm -rf -- \"$stage\"; fi; "
            f"if [ -z \"$kept\" ]; then {undo_directories_command(created)}:; fi; }}\n"
            "trap cleanup EXIT\ntrap 'exit 1' HUP INT TERM PIPE\n")


def _require_tools(config: ConfigSet) -> str:
    if STAGED in config.check:
        return ""
    message = quote(f"config set {config.root}: its check ({config.check}) must see the staged "
                    "files at their live paths, which needs unshare and mount (util-linux, "
                    "mount) on the host; install them, or give a check that takes {staged}. "
                    "No live file was changed.")
    return ("if ! command -v unshare >/dev/null 2>&1 || ! command -v mount >/dev/null 2>&1; "
            f"then echo {message} >&2; exit 1; fi\n")


def _stage(config: ConfigSet, changes: Sequence[FileChange]) -> str:
    """The live tree copied beside itself, then each change made in the copy (never through a
    symbolic link: a copied link to a live directory would write into the live tree)."""
    parent, name = posixpath.split(config.root)
    linked = quote(f"{config.root} is a symbolic link; a config set stages only a real "
                   "directory. No live file was changed.")
    lines = [f"if [ -L {quote(config.root)} ]; then echo {linked} >&2; exit 1; fi",
             f"stage=$(mktemp -d {quote(parent)}/.provisioner-{quote(name)}-XXXXXX)",
             'tree="$stage/tree"', f'cp -a -- {quote(config.root)} "$tree"']
    relative_dirs = sorted({posixpath.dirname(posixpath.relpath(change.path, config.root))
                            for change in changes} - {""})
    for directory in _with_parents(relative_dirs):
        refused = quote(f"{config.root}/{directory} is a symbolic link; a config set stages "
                        "only real directories. No live file was changed.")
        lines.append(f'if [ -L "$tree"/{quote(directory)} ]; then echo {refused} >&2; exit 1; fi')
    for change in changes:
        staged = f'"$tree"/{quote(posixpath.relpath(change.path, config.root))}'
        lines.append(f"rm -f -- {staged}")
        if change.desired is not None:
            owner = quote(f"{change.desired.owner}:{change.desired.group}")
            lines += [write_bytes_command(change.desired.content or b"", staged),
                      f"chown {owner} {staged}", f"chmod {change.desired.mode:04o} {staged}"]
    return "\n".join(lines) + "\n"


def _with_parents(directories: Sequence[str]) -> list[str]:
    """Each relative directory and all relative directories above it, shallowest first."""
    found = {"/".join(parts[:end]) for parts in (d.split("/") for d in directories)
             for end in range(1, len(parts) + 1)}
    return sorted(found, key=lambda directory: (directory.count("/"), directory))


def _same_filesystem(config: ConfigSet, changes: Sequence[FileChange]) -> str:
    """Refuse when a target directory is on another filesystem than the staging directory: mv
    would then copy, and a copy is neither atomic nor quick."""
    targets = " ".join(sorted({quote(posixpath.dirname(change.path)) for change in changes}))
    message = quote(f"config set {config.root}: its files are not all on the filesystem of "
                    f"{posixpath.dirname(config.root)}, so they cannot be swapped by renames. "
                    "No live file was changed.")
    return (f'if ! devices=$(stat -L -c %d -- "$stage" {targets}); then exit 1; fi\n'
            'set -- $devices; for d in "$@"; do '
            f'if [ "$d" != "$1" ]; then echo {message} >&2; exit 1; fi; done\n')


def _validate(config: ConfigSet) -> str:
    """The checker on the whole staged tree; its own output becomes the action's last lines."""
    if STAGED in config.check:
        command = config.check.replace(STAGED, '"$tree"')
    else:
        command = ("unshare --mount --propagation private -- sh -c "
                   "'mount --bind -- \"$1\" \"$2\" && exec sh -c \"$3\"' check "
                   f"\"$tree\" {quote(config.root)} {quote(config.check)}")
    header = quote(f"config set {config.root}: checking the staged configuration with "
                   f"{config.check} failed; no live file was changed:")
    return (f"if ! out=$({command} 2>&1); then printf '%s\\n' {header} \"$out\" >&2; "
            "exit 1; fi\n")


def _keep_old(changes: Sequence[FileChange], safeguard: str | None) -> str:
    """Safeguard records and backups of every path, then a hard link of each old file in the
    staging directory: what a failed swap renames back."""
    saves = "".join(safeguard_save(safeguard, change.path) for change in changes) \
        if safeguard else ""
    backups = "".join(backup_command(change.path) + "\n" for change in changes)
    links = "".join(f"if [ -e {quote(change.path)} ] || [ -L {quote(change.path)} ]; then "
                    f'ln -P -- {quote(change.path)} "$stage/old/{index}"; fi\n'
                    for index, change in enumerate(changes))
    return f'{saves}{backups}mkdir -- "$stage/old"\n{links}'


def _swap(config: ConfigSet, changes: Sequence[FileChange]) -> str:
    """The renames, in one burst no hang-up can interrupt; a failure renames the moved back."""
    lines = ["trap '' HUP INT TERM PIPE", "put_back() { lost=; " + "".join(
        f'if [ -n "$s{index}" ]; then {_restore(index, change.path)} || '
        f'lost="$lost {change.path}"; fi; '
        for index, change in reversed(list(enumerate(changes)))) + "}"]
    for index, change in enumerate(changes):
        target = quote(change.path)
        move = f"rm -f -- {target}" if change.desired is None else \
            f'mv -fT -- "$tree"/{quote(posixpath.relpath(change.path, config.root))} {target}'
        failed = quote(f"config set {config.root}: could not swap {change.path}; ")
        lines.append(f"if {move}; then s{index}=1; else put_back; "
                     f"if [ -z \"$lost\" ]; then echo {failed}'the files already swapped were "
                     f"put back.' >&2; else echo {failed}\"could not put back:$lost (their "
                     "copies are in the backup tree).\" >&2; fi; exit 1; fi")
    lines += ["kept=1", "trap - HUP INT TERM PIPE"]
    return "\n".join(lines) + "\n"


def _restore(index: int, path: str) -> str:
    old = f'"$stage/old/{index}"'
    return (f"{{ if [ -e {old} ] || [ -L {old} ]; then mv -fT -- {old} {quote(path)}; "
            f"else rm -f -- {quote(path)}; fi; }}")


def ensure_config_set(host: Host, root: str, files: Mapping[str, str | bytes | ConfigFile], *,
                      check: str, managed: Sequence[str] = (), notify: Sequence[str] = (),
                      safeguard: Safeguard | None = None, label: str = "") -> Step:
    """These files below ``root`` (and nothing else in the ``managed`` directories), changed
    together only when ``check`` accepts the whole staged tree: run at the live paths in a
    private mount namespace, or given the staged tree's path where it says ``{staged}``."""
    config = build_config_set(root, files, check, managed)
    show_diff = host.show_diff
    name = safeguard.name if safeguard else None

    def decide(probed: Probed) -> Plan:
        if probed.exit_code != 0:
            raise ProbeUnreadable(f"the probe of config set {config.root} failed "
                                  f"(exit {probed.exit_code})")
        return plan_config_set(config, parse_config_set(probed.output, config), show_diff, name)

    return Step(label or f"config set {config.root}",
                probe_config_set(config, with_content=show_diff), decide, tuple(notify),
                safeguard, host.secrets)
