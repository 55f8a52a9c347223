"""Config sets: the decision on probe output recorded on a Debian 12 nginx host, and the action
run by a local shell against a temporary tree with a fake checker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from provisioner.ops import backups as backup_tree
from provisioner.ops.config_set import (
    ConfigFile,
    ConfigSet,
    build_config_set,
    ensure_config_set,
    parse_config_set,
    plan_config_set,
    probe_config_set,
)
from provisioner.secrets.values import Secret
from provisioner.step import Probed, ProbeUnreadable, Refused
from tests.unit.fakes import LOCAL_GROUP as GROUP
from tests.unit.fakes import LOCAL_USER as USER
from tests.unit.fakes import make_host

SITE_A = b"server { listen 8081; return 200 'a\\n'; }\n"
SITE_B = b"server { listen 8082; return 200 'b\\n'; }\n"
A, B = "/etc/nginx/conf.d/site-a.conf", "/etc/nginx/conf.d/site-b.conf"
STRAY = "/etc/nginx/conf.d/stray.conf"

#: probe_config_set on cs1 (Debian 12, nginx 1.22) with both sites in place, without content.
CONVERGED = (f"{A}\0{B}\0=\0=\0{A}\0regular file|root|root|644\0{B}\0regular file|root|root|644"
             "\0\0\0f6a9eeba9415796d5302e7833e56d9eda1171f232db7843dcb00a4d384d16953  "
             f"{A}\0fc0ad67366d547bd13a87d1e3f61cc6e785ce49ecb18667a17bc15af5e13da46  {B}\0")
#: The same in diff mode, after an empty stray.conf was dropped into conf.d.
WITH_STRAY = (
    f"{A}\0{B}\0{STRAY}\0=\0{A}\0c2VydmVyIHsgbGlzdGVuIDgwODE7IHJldHVybiAyMDAgJ2Fcbic7IH0K\0"
    f"{B}\0c2VydmVyIHsgbGlzdGVuIDgwODI7IHJldHVybiAyMDAgJ2Jcbic7IH0K\0{STRAY}\0\0=\0"
    f"{A}\0regular file|root|root|644\0{B}\0regular file|root|root|644\0\0\0"
    f"f6a9eeba9415796d5302e7833e56d9eda1171f232db7843dcb00a4d384d16953  {A}\0"
    f"fc0ad67366d547bd13a87d1e3f61cc6e785ce49ecb18667a17bc15af5e13da46  {B}\0")
#: And in diff mode before the stray file came: the listing and the contents without it.
WITH_CONTENT = WITH_STRAY.replace(f"{STRAY}\0\0=", "=").replace(f"{STRAY}\0=", "=")
#: Before nginx's package ran: no conf.d, no site.
FRESH = "=\0=\0\0\0"
#: sites-enabled/default on Debian is a symbolic link.
LINKED = (f"=\0=\0{A}\0regular file|root|root|644\0/etc/nginx/sites-enabled/default\0"
          "symbolic link|root|root|777\0\0\0f6a9eeba9415796d5302e7833e56d9eda1171f232db7843dcb00"
          f"a4d384d16953  {A}\0")


def nginx_set(a: bytes = SITE_A, b: bytes = SITE_B) -> ConfigSet:
    return build_config_set("/etc/nginx", {A: a, B: b}, "nginx -t", ["/etc/nginx/conf.d"])


def decide(config: ConfigSet, output: str, show_diff: bool = False) -> tuple[str, str | None,
                                                                             str | None]:
    plan = plan_config_set(config, parse_config_set(output, config), show_diff)
    return plan.reason, plan.action, plan.diff


# --- the decision ------------------------------------------------------------------------------


def test_nothing_differs_means_no_action() -> None:
    reason, action, _ = decide(nginx_set(), CONVERGED)

    assert action is None
    assert reason == "all 2 files as desired, nothing stale in /etc/nginx/conf.d"


def test_one_changed_file_is_named_in_the_reason_and_its_diff() -> None:
    changed = SITE_B.replace(b"'b", b"'bee")

    reason, action, diff = decide(nginx_set(b=changed), WITH_CONTENT, show_diff=True)

    assert reason == f"{B} content changed"
    assert action is not None and A not in action
    assert diff is not None and diff.startswith(f"--- {B} (current)\n+++ {B} (desired)\n")
    assert "-server { listen 8082; return 200 'b\\n'; }\n" in diff
    assert "+server { listen 8082; return 200 'bee\\n'; }\n" in diff


def test_a_stale_drop_in_is_removed_in_the_same_swap() -> None:
    reason, action, diff = decide(nginx_set(), WITH_STRAY, show_diff=True)

    assert reason == f"{STRAY} removed (not in the set)"
    assert action is not None and f"rm -f -- {STRAY}" in action
    assert diff == f"--- {STRAY} (current)\n+++ /dev/null\n"


def test_a_missing_file_is_created_naming_the_directories_made_for_it() -> None:
    reason, action, diff = decide(nginx_set(), FRESH, show_diff=True)

    assert reason == f"{A} created; {B} created"
    assert action is not None and "mkdir -m 0755 /etc/nginx/conf.d" in action
    assert diff is not None and f"--- /dev/null\n+++ {A} (desired)\n" in diff


def test_a_missing_file_below_missing_directories_names_them() -> None:
    config = build_config_set("/etc/pgbouncer", {"/etc/pgbouncer/conf/main.ini": "x\n"},
                              "pgbouncer --check")

    reason, _, _ = decide(config, "=\0=\0/etc/pgbouncer/conf/main.ini\0absent 2\0\0\0")

    assert reason == ("/etc/pgbouncer/conf/main.ini created, with missing directories "
                      "/etc/pgbouncer, /etc/pgbouncer/conf")


def test_a_mode_difference_alone_is_named_without_a_diff() -> None:
    config = build_config_set("/etc/nginx", {A: ConfigFile(SITE_A, mode=0o640), B: SITE_B},
                              "nginx -t")

    reason, action, diff = decide(config, CONVERGED, show_diff=True)

    assert (reason, diff) == (f"{A} mode 0644 -> 0640", None)
    assert action is not None


def test_a_symbolic_link_where_a_file_belongs_is_refused() -> None:
    config = build_config_set("/etc/nginx", {A: SITE_A, "/etc/nginx/sites-enabled/default": "x"},
                              "nginx -t")

    with pytest.raises(Refused, match=r"^/etc/nginx/sites-enabled/default is a symbolic link, "
                       r"not a regular file"):
        decide(config, LINKED)


def test_a_cut_off_probe_is_unreadable_not_absent() -> None:
    with pytest.raises(ProbeUnreadable):
        parse_config_set(f"{A}\0{B}\0", nginx_set())


def test_the_probe_reads_no_content_unless_diffs_are_shown() -> None:
    assert "base64" not in probe_config_set(nginx_set())
    assert "base64" in probe_config_set(nginx_set(), with_content=True)


@pytest.mark.parametrize("path", ["/etc/nginx.conf", "/etc/nginx/../ssh/sshd_config",
                                  "conf.d/a.conf"])
def test_a_file_outside_the_root_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="is not below the config set's root /etc/nginx"):
        build_config_set("/etc/nginx", {path: "x"}, "nginx -t")


def test_the_step_masks_the_hosts_secrets_and_notifies_its_handlers() -> None:
    host = make_host()
    host._secrets = (Secret("hunter2"),)

    step = ensure_config_set(host, "/etc/nginx", {A: SITE_A}, check="nginx -t",
                             notify=["nginx:reload"])

    assert (step.label, step.notify, step.secrets) == ("config set /etc/nginx",
                                                       ("nginx:reload",), host.secrets)


def test_a_failed_probe_is_unreadable() -> None:
    step = ensure_config_set(make_host(), "/etc/nginx", {A: SITE_A}, check="nginx -t")

    with pytest.raises(ProbeUnreadable, match="exit 2"):
        step.decide(Probed(CONVERGED, 2))


# --- the action, run by a local shell ----------------------------------------------------------


@pytest.fixture
def backups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the backup root into tmp_path so a real run writes nothing outside it."""
    root = tmp_path / "backups"
    monkeypatch.setattr(backup_tree, "BACKUP_ROOT", str(root))
    return root


@pytest.fixture
def live(tmp_path: Path) -> Path:
    """A service tree: main.conf including conf.d, two sites and a stale one."""
    root = tmp_path / "service"
    (root / "conf.d").mkdir(parents=True)
    for name, text in {"main.conf": "include conf.d\n", "conf.d/a.conf": "a 1\n",
                       "conf.d/b.conf": "b 1\n", "conf.d/stale.conf": "old site\n"}.items():
        (root / name).write_text(text)
    return root


@pytest.fixture
def checker(tmp_path: Path) -> Path:
    """A fake checker: refuses a tree holding "broken", naming the file, as nginx -t would."""
    script = tmp_path / "check"
    script.write_text("#!/bin/sh\nif found=$(grep -rl broken \"$1\"); then\n"
                      "  echo \"check: [emerg] unknown directive in $found\"; exit 1\nfi\n")
    script.chmod(0o755)
    return script


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(path.relative_to(root)): path.read_bytes()
            for path in sorted(root.rglob("*")) if path.is_file()}


def apply(root: Path, wanted: dict[str, str], check: str, env: dict[str, str] | None = None,
          safeguard: str | None = None) -> subprocess.CompletedProcess[str]:
    """Probe the tree, decide, and run the action, all as the host would."""
    config = build_config_set(str(root), {str(root / name): ConfigFile(text, USER, GROUP)
                                          for name, text in wanted.items()},
                              check, [str(root / "conf.d")])
    probed = run_sh(probe_config_set(config))
    plan = plan_config_set(config, parse_config_set(probed.stdout, config), safeguard=safeguard)
    assert plan.action is not None, plan.reason
    return run_sh(plan.action, env)


def run_sh(script: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=30,
                          check=False, env=env)


NEW_SET = {"main.conf": "include conf.d\n", "conf.d/a.conf": "a 2\n",
           "conf.d/b.conf": "b 2\n", "conf.d/c.conf": "c 1\n"}


def test_a_failing_check_leaves_every_live_file_byte_identical(
        live: Path, checker: Path, backups: Path) -> None:
    before = snapshot(live)

    done = apply(live, {**NEW_SET, "conf.d/c.conf": "broken\n"}, f"{checker} {{staged}}")

    assert done.returncode == 1
    assert snapshot(live) == before
    assert sorted(path.name for path in live.parent.iterdir()) == ["check", "service"]


def test_a_failing_check_ends_the_output_with_the_checkers_own_words(
        live: Path, checker: Path, backups: Path) -> None:
    done = apply(live, {**NEW_SET, "conf.d/c.conf": "broken\n"}, f"{checker} {{staged}}")

    last = done.stderr.rstrip().splitlines()
    assert last[-1].startswith("check: [emerg] unknown directive in ")
    assert last[-1].endswith("/tree/conf.d/c.conf")
    assert last[-2].endswith("failed; no live file was changed:")


def test_a_passing_check_swaps_all_files_and_removes_the_stale_one(
        live: Path, checker: Path, backups: Path) -> None:
    done = apply(live, NEW_SET, f"{checker} {{staged}}")

    assert done.returncode == 0, done.stderr
    assert snapshot(live) == {name: text.encode() for name, text in NEW_SET.items()}
    assert sorted(path.name for path in live.parent.iterdir()) == ["backups", "check", "service"]


def test_a_passing_check_replaces_files_by_rename(
        live: Path, checker: Path, backups: Path) -> None:
    with (live / "conf.d/a.conf").open("rb") as reader:
        done = apply(live, NEW_SET, f"{checker} {{staged}}")

        assert done.returncode == 0, done.stderr
        assert reader.read() == b"a 1\n"  # the old inode, untouched
    assert (live / "conf.d/a.conf").read_bytes() == b"a 2\n"


def test_replaced_and_removed_files_are_kept_in_the_backup_tree(
        live: Path, checker: Path, backups: Path) -> None:
    apply(live, NEW_SET, f"{checker} {{staged}}")

    kept = backups / str(live).lstrip("/") / "conf.d"
    assert sorted(path.read_bytes() for path in kept.iterdir()) == [b"a 1\n", b"b 1\n",
                                                                    b"old site\n"]


def test_the_diff_mode_probe_reads_every_file_and_drop_in_even_with_odd_names(
        live: Path) -> None:
    (live / "conf.d" / "it's a $site.conf").write_text("odd\n")
    (live / "conf.d" / "sub").mkdir()
    config = build_config_set(str(live), {str(live / "conf.d/a.conf"): "a 1\n"}, "true",
                              [str(live / "conf.d")])

    state = parse_config_set(run_sh(probe_config_set(config, with_content=True)).stdout, config)

    odd, stale = str(live / "conf.d" / "it's a $site.conf"), str(live / "conf.d/stale.conf")
    sites = [str(live / "conf.d" / name) for name in ("a.conf", "b.conf")]
    assert sorted(state.entries) == sorted([*sites, odd, stale])
    assert (state.contents[odd], state.contents[stale]) == (b"odd\n", b"old site\n")
    assert state.contents[str(live / "conf.d/a.conf")] == b"a 1\n"


def test_a_guarded_set_records_every_path_it_changes_for_the_revert(
        live: Path, checker: Path, tmp_path: Path, backups: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_tree, "SAFEGUARD_ROOT", str(tmp_path / "safeguard"))
    (tmp_path / "safeguard" / "sshd").mkdir(parents=True)  # what arming the safeguard makes

    done = apply(live, NEW_SET, f"{checker} {{staged}}", safeguard="sshd")

    assert done.returncode == 0, done.stderr
    manifest = (tmp_path / "safeguard" / "sshd" / "manifest").read_text().splitlines()
    assert sorted(manifest) == [f"absent {live}/conf.d/c.conf", f"saved {live}/conf.d/a.conf",
                                f"saved {live}/conf.d/b.conf", f"saved {live}/conf.d/stale.conf"]


def test_the_check_sees_the_whole_staged_tree_not_only_the_changed_files(
        live: Path, tmp_path: Path, backups: Path) -> None:
    listing = tmp_path / "seen"

    apply(live, NEW_SET, f"sh -c 'cd \"$1\" && find . -type f | sort > {listing}' check {{staged}}")

    assert listing.read_text().split() == ["./conf.d/a.conf", "./conf.d/b.conf",
                                           "./conf.d/c.conf", "./main.conf"]


def test_a_failed_rename_puts_back_the_files_already_swapped(
        live: Path, checker: Path, tmp_path: Path, backups: Path) -> None:
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "mv").write_text('#!/bin/sh\nfor last; do :; done\n'
                             'case $last in */conf.d/c.conf) exit 1 ;; esac\nexec /bin/mv "$@"\n')
    (shim / "mv").chmod(0o755)
    before = snapshot(live)

    done = apply(live, NEW_SET, f"{checker} {{staged}}",
                 env={**os.environ, "PATH": f"{shim}:{os.environ['PATH']}"})

    assert done.returncode == 1
    assert "could not swap" in done.stderr and "already swapped were put back" in done.stderr
    assert snapshot(live) == before


def test_a_hang_up_during_the_check_leaves_the_live_tree_and_no_staging_copy(
        live: Path, tmp_path: Path, backups: Path) -> None:
    started = tmp_path / "checking"
    config = build_config_set(str(live), {str(live / "conf.d/a.conf"): ConfigFile("a 2\n", USER,
                                                                                  GROUP)},
                              f"touch {started}; sleep 30; echo {{staged}}")
    plan = plan_config_set(config, parse_config_set(run_sh(probe_config_set(config)).stdout,
                                                    config))
    before = snapshot(live)
    shell = subprocess.Popen(["/bin/sh", "-c", plan.action or ""], start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 10
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    os.killpg(shell.pid, signal.SIGHUP)  # what a dying terminal session sends its group

    assert shell.wait(timeout=10) != 0
    assert snapshot(live) == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["checking", "service"]


def test_a_namespace_check_without_unshare_fails_before_changing_anything(
        live: Path, backups: Path) -> None:
    before = snapshot(live)

    done = apply(live, NEW_SET, "nginx -t", env={"PATH": "/nonexistent"})

    assert done.returncode == 1
    assert "needs unshare and mount" in done.stderr
    assert snapshot(live) == before


def can_unshare() -> bool:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        return False
    return run_sh("unshare --mount --propagation private true").returncode == 0


@pytest.mark.skipif(not can_unshare(), reason="needs root and mount namespaces")
def test_a_namespace_check_reads_the_staged_tree_at_the_live_paths(
        live: Path, backups: Path) -> None:
    before = snapshot(live)
    check = f"grep -q broken {live}/conf.d/c.conf && echo 'saw it at {live}' && exit 1"

    done = apply(live, {**NEW_SET, "conf.d/c.conf": "broken\n"}, check)

    assert done.returncode == 1
    assert done.stderr.rstrip().endswith(f"saw it at {live}")
    assert snapshot(live) == before
