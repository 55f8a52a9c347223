"""backup_target spec: each client's key is pinned to its address and to adding files to its own
directory; the copies are pruned by this host's own timer."""

from __future__ import annotations

from typing import Any


def test_rrsync_is_there(host: Any, role_vars: dict[str, Any]) -> None:
    assert host.file(role_vars["backup_target_rrsync"]).mode & 0o111


def test_only_root_can_change_the_accepted_keys(host: Any, role_vars: dict[str, Any]) -> None:
    home = role_vars["backup_target_directory"]
    for path in (home, f"{home}/.ssh", f"{home}/.ssh/authorized_keys"):
        entry = host.file(path)
        assert (entry.user, entry.mode & 0o022) == ("root", 0), path


def test_every_key_is_restricted_to_adding_files_in_its_directory(
        host: Any, role_vars: dict[str, Any]) -> None:
    home = role_vars["backup_target_directory"]
    lines = host.file(f"{home}/.ssh/authorized_keys").content_string.splitlines()
    assert len(lines) == len(role_vars["backup_target_clients"])
    for line in lines:
        assert line.startswith('restrict,from="')
        assert f'command="/usr/local/sbin/provisioner-backup-target receive {home}/' in line


def test_the_forced_command_refuses_deletes_and_keeps_existing_files(host: Any) -> None:
    program = host.file("/usr/local/sbin/provisioner-backup-target")
    assert (program.user, program.mode) == ("root", 0o755)
    assert program.contains("--ignore-existing")
    assert program.contains("-wo -no-del -munge")


def test_the_copies_are_pruned_by_this_hosts_own_timer(host: Any) -> None:
    timer = host.service("provisioner-backup-target-prune.timer")
    assert timer.is_enabled and timer.is_running


def test_the_last_pruning_succeeded_and_found_nothing_odd(host: Any) -> None:
    record = host.file("/var/lib/provisioner-backup-target/last-prune")
    if not record.exists:
        return  # not run yet
    fields = dict(line.split("=", 1) for line in record.content_string.splitlines() if "=" in line)
    assert fields.get("result") == "ok", (
        f"the backup host's last pruning ({fields.get('time')}) ended {fields.get('result')}: "
        f"{fields.get('reason')} (journalctl -u provisioner-backup-target-prune.service)")


def test_every_client_has_a_private_directory(host: Any, role_vars: dict[str, Any]) -> None:
    for client in role_vars["backup_target_clients"]:
        directory = host.file(f"{role_vars['backup_target_directory']}/{client['host']}")
        assert directory.is_directory, client["host"]
        assert (directory.user, directory.mode) == (role_vars["backup_target_user"], 0o700)
