"""The key file a host's inventory logs in with: whether it can log in at all (checked before
any contact), and its public key, so a role can refuse to take it away.

Read from ``ssh.identity_file``: its ``.pub`` beside it when there is one (no secret is
touched), else the private key itself when it is not encrypted. Unknown (None) when the login
uses the SSH agent or paramiko's default keys, or an encrypted key without its ``.pub``: then
only the safeguard's proof by a new login protects that login.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from provisioner.inventory.hosts import HostConfig


@dataclass(frozen=True)
class PublicKey:
    """``<type> <base64>`` of an OpenSSH public key, without options or comment."""

    kind: str
    blob: str

    @classmethod
    def parse(cls, line: str) -> PublicKey | None:
        """The key of an authorized_keys or .pub line; None when the line holds none."""
        fields = line.split()
        for index, field in enumerate(fields[:-1]):
            if field.startswith(("ssh-", "ecdsa-", "sk-")) and _is_base64(fields[index + 1]):
                return cls(field, fields[index + 1])
        return None

    @property
    def fingerprint(self) -> str:
        """As ``ssh-keygen -l`` prints it: SHA256 of the key blob, unpadded base64."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def login_public_key(config: HostConfig) -> PublicKey | None:
    """The public half of the inventory's identity file for this host, when it can be known."""
    path = config.ssh.identity_file
    if path is None:
        return None
    public = Path(f"{path}.pub")
    if public.is_file():
        try:
            return PublicKey.parse(public.read_text(encoding="ascii", errors="replace"))
        except OSError:
            return None
    return _from_private_key(path)


def _from_private_key(path: Path) -> PublicKey | None:
    import paramiko  # only when there is no .pub: paramiko's import costs a run ~0.1 s

    try:
        key = paramiko.PKey.from_path(path)
    except (OSError, paramiko.SSHException, ValueError, TypeError):
        return None  # missing, encrypted (TypeError) or unreadable: the login will say so
    return PublicKey(key.get_name(), key.get_base64())


def key_file_problem(path: Path) -> str | None:
    """Why this file cannot log in, read from the file alone; None when it can."""
    if path.is_dir():
        return "is a directory, not a key file"
    if not path.exists():
        return "does not exist"
    if not path.is_file():
        return "is not a regular file"
    if path.suffix == ".pub":
        return "is the public half; give the private key file beside it"
    try:
        text = path.read_text(encoding="ascii", errors="replace")[:65536]
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if "-----BEGIN" not in text or "PRIVATE KEY-----" not in text:
        return "is not a private key file (no '-----BEGIN ... PRIVATE KEY-----' line)"
    if private_key_is_encrypted(text) and not os.environ.get("SSH_AUTH_SOCK"):
        return ("is encrypted (it has a passphrase) and no SSH agent is running to hold it: "
                "start one and ssh-add the key, or use a key without a passphrase")
    return None


def private_key_is_encrypted(text: str) -> bool:
    """Whether a PEM or OpenSSH private key file needs a passphrase, without loading it."""
    if "ENCRYPTED" in text.split("-----END", 1)[0]:
        return True
    body = "".join(line for line in text.splitlines() if line and not line.startswith("-----"))
    try:
        blob = base64.b64decode(body[:200] + "=" * (-len(body[:200]) % 4))
    except ValueError:
        return False
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic):
        return False
    (length,) = struct.unpack(">I", blob[len(magic):len(magic) + 4])
    return blob[len(magic) + 4:len(magic) + 4 + length] != b"none"
