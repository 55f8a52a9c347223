"""The host report as one self-contained HTML page, rendered from the report's data.

The page is the data of provisioner/report/data.py (what ``invoke report --json`` writes) put
through one Jinja template with autoescape on: a step label, a reason or a diff that holds
markup (``<script>``) shows as text. Nothing is fetched and nothing runs: the CSS is inline, the
diffs fold with ``<details>``, and a Content-Security-Policy forbids anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

#: The template, beside the package that gathers the page's data.
TEMPLATES = Path(__file__).resolve().parents[1] / "report" / "templates"
TEMPLATE = "host_report.html.j2"


def render_page(data: Mapping[str, Any]) -> str:
    """The page's HTML for the report's data (page_data)."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                                     autoescape=True, keep_trailing_newline=True)
    environment.filters.update(when=when, outcome=outcome, outcome_words=outcome_words)
    return environment.get_template(TEMPLATE).render(data=data)


def when(moment: str | None) -> str:
    """An ISO 8601 UTC time as a person reads it: 2026-12-04 05:00:41 UTC."""
    if not moment:
        return "-"
    return moment.replace("T", " ").removesuffix("Z") + (" UTC" if moment.endswith("Z") else "")


def outcome(host: Mapping[str, Any]) -> str:
    """One word for the host: failed (its run or its verify), changed, or ok."""
    run, verify = host.get("provision") or {}, host.get("verify") or {}
    if run.get("failed") or verify.get("failed") or verify.get("exit_code"):
        return "failed"
    return "changed" if run.get("changed") else "ok"


def outcome_words(host: Mapping[str, Any]) -> str:
    word = outcome(host)
    if word == "changed":
        return "would change" if (host.get("provision") or {}).get("check") else "changed"
    return "converged" if word == "ok" else word
