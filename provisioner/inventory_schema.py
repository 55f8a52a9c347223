"""The inventory file's shape, enforced with pydantic: YAML data in, plain data with defaults out.

Only this module imports pydantic, and only when a document has to be validated: importing
pydantic costs about 60 ms, a sixth of a whole no-op run, so an inventory that already passed
(see validation_cache.py) skips it. The output is ``model_dump()`` of the validated model: plain
dicts and lists, every optional key present with its default, which inventory.py turns into
HostConfigs whether it came from here or from the cache.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from provisioner.errors import InventoryError

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                       r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _check_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        if _HOSTNAME.match(value) and not value.replace(".", "").isdigit():
            return value
    raise ValueError(f"{value!r} is neither an IP address nor a valid DNS name")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SshFile(_Strict):
    """SSH settings as written in the file; every field optional so hosts can override one."""

    identity_file: str | None = None
    known_hosts: str | None = None
    trust_on_first_use: bool | None = None
    jump_host: str | None = None
    connect_timeout: float | None = Field(default=None, gt=0)
    command_timeout: float | None = Field(default=None, gt=0)
    sudo_password: dict[str, str] | None = None
    control_persist: float | None = Field(default=None, ge=0)


class DefaultsFile(_Strict):
    user: str = "root"
    port: int = Field(default=22, ge=1, le=65535, strict=True)
    ssh: SshFile = SshFile()
    vars: dict[str, Any] = {}


class GroupFile(_Strict):
    roles: list[str] = []
    vars: dict[str, Any] = {}


class HostFile(_Strict):
    address: str
    port: int | None = Field(default=None, ge=1, le=65535, strict=True)
    user: str | None = None
    groups: list[str] = []
    roles: list[str] = []
    vars: dict[str, Any] = {}
    ssh: SshFile = SshFile()

    _address = field_validator("address")(_check_address)


class InventoryFile(_Strict):
    defaults: DefaultsFile = DefaultsFile()
    groups: dict[str, GroupFile] = {}
    hosts: dict[str, HostFile]


def validate_document(path: Path, raw: dict[str, Any]) -> dict[str, Any]:
    """The parsed YAML checked against the schema, as plain data; raises InventoryError."""
    try:
        return InventoryFile.model_validate(raw).model_dump()
    except ValidationError as error:
        raise _inventory_error(path, error) from None


def _inventory_error(path: Path, error: ValidationError) -> InventoryError:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    message = first["msg"]
    if first["type"] == "extra_forbidden":
        message = f"unknown key {first['loc'][-1]!r}; see README.md 'Inventory' for the keys"
    elif first["type"] == "missing":
        message = "this key is required"
    others = len(error.errors()) - 1
    more = f" ({others} more problem{'s' if others > 1 else ''} after this one)" if others else ""
    return InventoryError(str(path), key, message + more)
