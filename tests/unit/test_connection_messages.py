"""What a person reads when a login fails: the key that was tried, a changed host key as
ssh-keygen shows it, and the exact command that removes the stale known_hosts line."""

from __future__ import annotations

import subprocess
from pathlib import Path

import paramiko

from provisioner.inventory.hosts import HostConfig
from provisioner.login_keys import PublicKey, login_public_key
from provisioner.transport.connection import _bad_key_message, _ssh_error_message, key_fingerprint
from tests.unit.fakes import host_config


def config(port: int = 22, identity: Path | None = Path("/keys/id_ed25519")) -> HostConfig:
    return host_config(user="admin", port=port, roles=(), identity_file=identity,
                       known_hosts=Path("/home/me/.ssh/known_hosts"))


def generated_key(tmp_path: Path) -> tuple[paramiko.PKey, str]:
    path = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    shown = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], capture_output=True,
                           text=True, check=True).stdout.split()[1]
    return paramiko.PKey.from_path(path), shown


def test_a_key_fingerprint_reads_as_ssh_keygen_prints_it(tmp_path: Path) -> None:
    key, shown = generated_key(tmp_path)
    assert key_fingerprint(key) == shown
    assert PublicKey(key.get_name(), key.get_base64()).fingerprint == shown


def test_a_changed_host_key_names_its_fingerprint_and_the_removal_command(
        tmp_path: Path) -> None:
    key, shown = generated_key(tmp_path)
    error = paramiko.BadHostKeyException("192.0.2.10", key, key)
    message = _bad_key_message(config(port=2222), error)
    assert shown in message
    assert "ssh-keygen -R '[192.0.2.10]:2222' -f /home/me/.ssh/known_hosts" in message


def test_a_refused_login_names_the_key_file_tried() -> None:
    message = _ssh_error_message(config(), paramiko.AuthenticationException("denied"))
    assert "/keys/id_ed25519" in message and "'admin'" in message


def test_a_refused_login_without_a_key_file_says_what_was_tried() -> None:
    message = _ssh_error_message(config(identity=None), paramiko.AuthenticationException("no"))
    assert "SSH agent" in message and "no ssh.identity_file" in message


def test_an_encrypted_key_says_so_and_that_the_host_refused_nothing() -> None:
    message = _ssh_error_message(config(), paramiko.PasswordRequiredException("encrypted"))
    assert "is encrypted" in message and "ssh-add" in message and "refused nothing" in message


def test_no_key_at_all_says_where_one_comes_from() -> None:
    error = paramiko.SSHException("No authentication methods available")
    message = _ssh_error_message(config(identity=None), error)
    assert "ssh.identity_file is not set" in message and "ssh-add" in message


def test_a_message_ending_in_a_full_stop_gets_no_second_one() -> None:
    message = _ssh_error_message(config(), paramiko.AuthenticationException("failed."))
    assert ".." not in message


def test_the_login_key_of_an_encrypted_file_without_its_public_half_is_unknown(
        tmp_path: Path) -> None:
    path = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "passphrase", "-f", str(path)],
                   check=True)
    path.with_suffix(".pub").unlink()
    assert login_public_key(config(identity=path)) is None
