"""Reads the host report's figures back from its HTML (as written, or Chromium's --dump-dom):
every element with ``data-figure`` inside a host's section, by (host, figure key)."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any


class _FigureReader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[tuple[str, str], str] = {}
        self._host = ""
        self._open: list[tuple[str, str | None]] = []  # (tag, figure key or None)
        self._text: dict[int, list[str]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "section" and found.get("data-host"):
            self._host = found["data-host"] or ""
        if tag in {"meta", "br", "link", "img", "input"}:
            return
        self._open.append((tag, found.get("data-figure")))
        if found.get("data-figure"):
            self._text[len(self._open)] = []

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            open_tag, figure = self._open.pop()
            depth = len(self._open) + 1
            if figure is not None:
                self.figures[(self._host, figure)] = "".join(self._text.pop(depth)).strip()
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        for parts in self._text.values():
            parts.append(data)


def figures(page: str) -> dict[tuple[str, str], str]:
    """(host, figure key) -> the text the page shows for it."""
    reader = _FigureReader()
    reader.feed(page)
    return reader.figures


def shown(value: Any) -> str:
    """A JSON value as the page writes it."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def expected_figures(data: dict[str, Any]) -> dict[tuple[str, str], str]:
    """The figures the page must show, by the same keys, from the report's JSON."""
    expected: dict[tuple[str, str], str] = {}
    for name, host in data["hosts"].items():
        run = host["provision"]
        for key in ("ok", "changed", "failed", "round_trips", "duration_seconds", "check"):
            expected[(name, f"provision.{key}")] = shown(run[key])
        verify = host["verify"]
        if verify is not None:
            keys = ("passed", "failed", "skipped") if verify["passed"] is not None \
                else ("exit_code",)
            expected.update({(name, f"verify.{key}"): shown(verify[key]) for key in keys})
        if host["audit"] is not None:
            expected.update({(name, f"audit.{key}"): shown(host["audit"][key]) for key in
                             ("hardening_index", "warnings_total", "suggestions_total")})
        expected.update(_live_figures(name, host["live"]))
    return expected


def _live_figures(name: str, live: dict[str, Any]) -> dict[tuple[str, str], str]:
    if not live["read"]:
        return {}
    found = {(name, "live.round_trips"): shown(live["round_trips"])} \
        if live["round_trips"] else {}
    backup, deploys = live["backup"], live["deploy_history"]
    if backup is not None and backup["latest_archive"]:
        found[(name, "backup.latest_age_hours")] = shown(backup["latest_age_hours"])
        found[(name, "backup.archives")] = shown(backup["archives"])
    if deploys is not None and deploys["entries"]:
        found[(name, "deploy_history.count")] = shown(len(deploys["entries"]))
    for certificate in live["certificates"] or []:
        if certificate["present"]:
            found[(name, f"certificates.{certificate['site']}.days_left")] = \
                shown(certificate["days_left"])
    return found
