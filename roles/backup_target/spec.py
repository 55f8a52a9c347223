"""backup_target spec: each client's key is pinned to its address, rrsync and its own directory."""

from __future__ import annotations

from typing import Any


def test_rrsync_is_there(host: Any, role_vars: dict[str, Any]) -> None:
    assert host.file(role_vars["backup_target_rrsync"]).mode & 0o111


def test_only_root_can_change_the_accepted_keys(host: Any, role_vars: dict[str, Any]) -> None:
    home = role_vars["backup_target_directory"]
    for path in (home, f"{home}/.ssh", f"{home}/.ssh/authorized_keys"):
        entry = host.file(path)
        assert (entry.user, entry.mode & 0o022) == ("root", 0), path


def test_every_key_is_restricted_to_rrsync_write_only(host: Any,
                                                      role_vars: dict[str, Any]) -> None:
    home = role_vars["backup_target_directory"]
    lines = host.file(f"{home}/.ssh/authorized_keys").content_string.splitlines()
    assert len(lines) == len(role_vars["backup_target_clients"])
    for line in lines:
        assert line.startswith('restrict,from="')
        assert f'command="{role_vars["backup_target_rrsync"]} -wo {home}/' in line


def test_every_client_has_a_private_directory(host: Any, role_vars: dict[str, Any]) -> None:
    for client in role_vars["backup_target_clients"]:
        directory = host.file(f"{role_vars['backup_target_directory']}/{client['host']}")
        assert directory.is_directory, client["host"]
        assert (directory.user, directory.mode) == (role_vars["backup_target_user"], 0o700)
