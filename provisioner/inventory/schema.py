"""The inventory file's shape, enforced with pydantic: YAML data in, plain data with defaults out.

Only this module imports pydantic, and only when a document has to be validated: importing
pydantic costs about 60 ms, a sixth of a whole no-op run, so an inventory that already passed
(see validation_cache.py) skips it. The output is ``model_dump()`` of the validated model: plain
dicts and lists, every optional key present with its default, which inventory/loader.py turns into
HostConfigs whether it came from here or from the cache.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from provisioner.errors import InventoryError
from provisioner.inventory.hosts import SECRET_KEYS, SECRET_REFERENCE_REQUIRED

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*"
                       r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")


def _check_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        if _HOSTNAME.fullmatch(value) and not value.replace(".", "").isdigit():
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
    """The first problem as one message, unknown keys first.

    pydantic lists a required key that is missing before the unknown key beside it, so for a
    typo such as ``adress`` it would say "address is required" and hide the key the user
    actually wrote; the typo is the problem to name, and the missing key it explains is not
    counted as another one."""
    problems: list[dict[str, Any]] = [dict(problem) for problem in error.errors()]
    unknown = [problem for problem in problems if problem["type"] == "extra_forbidden"]
    first = (unknown or problems)[0]
    loc = tuple(first["loc"])
    hidden = {(*problem["loc"][:-1], _closest(problem["loc"][-1], _keys_at(problem["loc"][:-1])))
              for problem in unknown}
    others = len([problem for problem in problems if problem is not first
                  and not (problem["type"] == "missing" and tuple(problem["loc"]) in hidden)])
    more = f" ({others} more problem{'s' if others > 1 else ''} after this one)" if others else ""
    return InventoryError(str(path), _dotted(loc), _describe(first) + more)


def _describe(problem: dict[str, Any]) -> str:
    loc = tuple(problem["loc"])
    parent = f"under {_dotted(loc[:-1])}" if loc[:-1] else "at the top level"
    if problem["type"] == "extra_forbidden":
        return _unknown_key(loc, parent)
    if problem["type"] == "missing":
        return f"the key {loc[-1]!r} is required {parent} and is missing"
    if SECRET_KEYS & {str(part) for part in loc}:
        return SECRET_REFERENCE_REQUIRED  # never echo what may be a password
    message = str(problem["msg"])
    if problem["type"] in {"model_type", "dict_type"}:
        message = "should be a mapping (indented 'key: value' lines)"
    value = problem.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        message += f", got {value!r}"
    return message


def _unknown_key(loc: tuple[Any, ...], parent: str) -> str:
    allowed = _keys_at(loc[:-1])
    closest = _closest(loc[-1], allowed)
    if closest:
        return f"unknown key {loc[-1]!r} {parent}; did you mean {closest!r}?"
    listed = f"the keys allowed there are {', '.join(allowed)}; " if allowed else ""
    return f"unknown key {loc[-1]!r} {parent}; {listed}see README.md 'Inventory' for the keys"


def _closest(name: Any, candidates: list[str]) -> str:
    import difflib

    matches = difflib.get_close_matches(str(name), candidates, n=1, cutoff=0.6)
    return matches[0] if matches else ""


def _keys_at(loc: tuple[Any, ...] | list[Any]) -> list[str]:
    """The keys the schema allows at a location (a host's, the defaults' ssh...), for advice."""
    shape: Any = InventoryFile
    for part in loc:
        shape = _inner(shape, part)
    shape = _without_none(shape)
    if isinstance(shape, type) and issubclass(shape, BaseModel):
        return list(shape.model_fields)
    return []


def _inner(shape: Any, part: Any) -> Any:
    """What sits under ``part`` of ``shape``: a model's field, a mapping's value, a list's item."""
    shape = _without_none(shape)
    if isinstance(shape, type) and issubclass(shape, BaseModel):
        found = shape.model_fields.get(str(part))
        return found.annotation if found is not None else None
    if get_origin(shape) in (dict, list):
        return get_args(shape)[-1]
    return None


def _without_none(shape: Any) -> Any:
    if get_origin(shape) in (Union, UnionType):
        members = [member for member in get_args(shape) if member is not type(None)]
        return members[0] if len(members) == 1 else shape
    return shape


def _dotted(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)
