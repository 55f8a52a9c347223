"""The host report's data: each host's records joined with its live status, ready to render.

This is what ``invoke report --json`` writes and what the HTML page is rendered from, and the
page shows nothing it does not find here: its figures are the JSON's by construction. Ordering
for the reader is decided here too: failed and changed steps first within a role, and the roles
with such steps before those without.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from provisioner.errors import ProvisionerError
from provisioner.records import load_record
from provisioner.report.provision_record import timestamp

#: Findings of an audit shown per kind (warnings, suggestions).
TOP_FINDINGS = 10
#: Failed and changed steps first, then ok ones; a status not listed goes last.
STATUS_ORDER = {"failed": 0, "refused": 0, "changed": 1, "ok": 2}


def has_provision_record(inventory_path: Path, name: str) -> bool:
    return load_record(inventory_path, name, "provision") is not None


def check_records(inventory_path: Path, names: Sequence[str]) -> None:
    """Every chosen host has a provision record, or one message says which lacks it."""
    for name in names:
        if not has_provision_record(inventory_path, name):
            raise ProvisionerError(f"no provision record for host {name} of inventory "
                                   f"{inventory_path}: run invoke provision --host {name} "
                                   "first (every run keeps one on this machine).")


def page_data(inventory_path: Path, names: Sequence[str],
              live: Mapping[str, dict[str, Any]], generated: datetime | None = None
              ) -> dict[str, Any]:
    """The whole page: when it was made, for which inventory, and each host's part."""
    return {"generated_at": timestamp(generated or datetime.now(UTC)),
            "inventory": str(inventory_path),
            "hosts": {name: host_data(inventory_path, name, live.get(name)) for name in names}}


def host_data(inventory_path: Path, name: str, live: dict[str, Any] | None) -> dict[str, Any]:
    provision = load_record(inventory_path, name, "provision")
    if provision is None:
        check_records(inventory_path, [name])
    return {"host": name,
            "provision": provision_view(provision or {}),
            "verify": load_record(inventory_path, name, "verify"),
            "audit": audit_view(load_record(inventory_path, name, "audit")),
            "live": live or {"read": False, "reason": "not read", "deploy_history": None,
                             "backup": None, "certificates": None}}


def provision_view(record: dict[str, Any]) -> dict[str, Any]:
    """The provision record with its roles and steps in the page's order, each role counted."""
    roles = [role_view(role) for role in record.get("roles", [])]
    roles.sort(key=lambda role: 0 if role["failed"] or role["changed"] else 1)
    return {**record, "roles": roles}


def role_view(role: dict[str, Any]) -> dict[str, Any]:
    steps = sorted(role.get("steps", []), key=lambda step: STATUS_ORDER.get(step["status"], 3))
    counts = {"ok": 0, "changed": 0, "failed": 0}
    for step in steps:
        counts["failed" if step["status"] in ("failed", "refused") else
               "changed" if step["status"] == "changed" else "ok"] += 1
    return {"name": role.get("name", ""), **counts, "steps": steps}


def audit_view(record: dict[str, Any] | None) -> dict[str, Any] | None:
    """The audit record's keys, its findings cut to the top ones (the totals kept)."""
    if record is None:
        return None
    warnings, suggestions = record.get("warnings", []), record.get("suggestions", [])
    return {"hardening_index": record.get("hardening_index"),
            "lynis_version": record.get("lynis_version"),
            "ran_at": record.get("ran_at"),
            "warnings_total": len(warnings), "suggestions_total": len(suggestions),
            "warnings": warnings[:TOP_FINDINGS], "suggestions": suggestions[:TOP_FINDINGS]}
