"""nginx_upstreams and nginx_rate_limits: validated before contact, in the shape the templates use.

An upstream is a pool of instances of one backend (balanced, each marked failed after
``max_fails`` errors for ``fail_timeout``, with idle keepalive connections to it); a rate limit is
a ``limit_req_zone`` keyed by the client's address. Both are refused here when nginx could not
read them, with the variable and the entry named; what only the host can know (a server name
that does not resolve) is left to ``nginx -t`` on the staged configuration.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from provisioner.errors import RoleError

BALANCING = {"round_robin": "", "least_conn": "least_conn", "ip_hash": "ip_hash",
             "random": "random two least_conn"}
_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_APP = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_SERVER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$|^unix:/[^\s;{}\"']+$")
_RATE = re.compile(r"^([1-9][0-9]*)r/([sm])$")
_SIZE = re.compile(r"^[1-9][0-9]*[km]$")
_TIME = re.compile(r"^[0-9]+(ms|s|m|h)?$")


@dataclass(frozen=True)
class Upstream:
    name: str
    servers: tuple[str, ...]
    balance: str = "round_robin"
    max_fails: int = 3
    fail_timeout: str = "30s"
    keepalive: int = 16
    #: The app (roles/app) whose instances this pool is: its servers are the ports a deploy
    #: made live, in /etc/nginx/apps/<app>.servers, instead of ``servers``.
    app: str = ""

    @property
    def method(self) -> str:
        """The balancing directive ('' for nginx's default round robin)."""
        return BALANCING[self.balance]


@dataclass(frozen=True)
class RateZone:
    zone: str
    rate: str
    size: str = "10m"


def read_upstreams(variables: Mapping[str, Any]) -> list[Upstream]:
    """nginx_upstreams as Upstreams; RoleError naming the entry and field."""
    items = _list(variables, "nginx_upstreams")
    upstreams = [_upstream(index, item) for index, item in enumerate(items)]
    _unique("nginx_upstreams", [upstream.name for upstream in upstreams])
    return upstreams


def _upstream(index: int, item: Any) -> Upstream:
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or \
            not _NAME.fullmatch(item["name"]):
        raise RoleError(f"nginx_upstreams[{index}] needs a name of letters, digits and '_' "
                        "(e.g. api), the name its sites' locations give as upstream.")
    name = item["name"]
    unknown = sorted(set(item) - {"name", "servers", "app", "balance", "max_fails",
                                  "fail_timeout", "keepalive"})
    if unknown:
        raise RoleError(f"nginx_upstreams: upstream {name!r} has unknown fields "
                        f"{', '.join(unknown)}; an upstream has name, servers or app, balance, "
                        "max_fails, fail_timeout and keepalive.")
    servers, app = _servers(name, item.get("servers"), item.get("app"))
    balance = item.get("balance", "round_robin")
    if balance not in BALANCING:
        raise RoleError(f"nginx_upstreams: upstream {name!r} has balance {balance!r}; it is one "
                        f"of {', '.join(BALANCING)}.")
    fail_timeout = str(item.get("fail_timeout", "30s"))
    if not _TIME.fullmatch(fail_timeout):
        raise RoleError(f"nginx_upstreams: upstream {name!r} has fail_timeout "
                        f"{fail_timeout!r}; it is a time such as 30s.")
    # An app's instances are health-checked by each move; taking both out for fail_timeout
    # after a passing blip (Docker re-creating its NAT rules as it restarts) would turn 0.2 s
    # into 30: for them nginx only skips to the next instance (max_fails 0) unless told.
    default_max_fails = 0 if app is not None else 3
    return Upstream(name, tuple(servers), balance,
                    _count(name, "max_fails", item.get("max_fails", default_max_fails)),
                    fail_timeout,
                    _count(name, "keepalive", item.get("keepalive", 16)), app or "")


def _servers(name: str, servers: Any, app: Any) -> tuple[Sequence[str], str | None]:
    """(the servers, the app whose instances they are instead, if one is named)."""
    if app is not None:
        if servers is not None or not isinstance(app, str) or not _APP.fullmatch(app):
            raise RoleError(f"nginx_upstreams: upstream {name!r} has app {app!r}"
                            f"{' and servers' if servers is not None else ''}; app names the "
                            "app_name whose instances the pool is (a deploy keeps its servers), "
                            "instead of servers.")
        return [], app
    if not isinstance(servers, Sequence) or isinstance(servers, str) or not servers or \
            not all(_is_server(server) for server in servers):
        raise RoleError(f"nginx_upstreams: upstream {name!r} needs servers, a list of at least "
                        "one host:port with a port from 1 to 65535 (e.g. ['127.0.0.1:8000']); "
                        f"it has {servers!r}.")
    return servers, None


def _is_server(server: Any) -> bool:
    """host:port (port 1 to 65535), [v6]:port, a host alone (port 80) or unix:/path."""
    if not isinstance(server, str) or not _SERVER.fullmatch(server):
        return False
    port = server.rsplit(":", 1)[1] if ":" in server and not server.startswith("unix:") \
        and not server.endswith("]") else "80"
    return 0 < int(port) < 65536


def _count(name: str, field: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise RoleError(f"nginx_upstreams: upstream {name!r} has {field} {value!r}; it is a "
                        "whole number, 0 or more.")
    return value


def read_rate_limits(variables: Mapping[str, Any]) -> list[RateZone]:
    """nginx_rate_limits as RateZones: ``10r/s`` or ``30r/m`` rates only (what limit_req_zone
    reads), sizes in k or m."""
    zones = []
    for index, item in enumerate(_list(variables, "nginx_rate_limits")):
        if not isinstance(item, Mapping) or not isinstance(item.get("zone"), str) or \
                not _NAME.fullmatch(item["zone"]):
            raise RoleError(f"nginx_rate_limits[{index}] needs a zone name of letters, digits "
                            "and '_' (e.g. {zone: api, rate: 10r/s, size: 10m}).")
        zone, rate, size = item["zone"], str(item.get("rate")), str(item.get("size", "10m"))
        if not _RATE.fullmatch(rate):
            raise RoleError(f"nginx_rate_limits: zone {zone!r} has rate {rate!r}, which does not "
                            "parse: a rate is requests per second or minute, such as 10r/s or "
                            "30r/m.")
        if not _SIZE.fullmatch(size):
            raise RoleError(f"nginx_rate_limits: zone {zone!r} has size {size!r}; it is a size "
                            "in k or m, such as 10m (about 160000 addresses).")
        zones.append(RateZone(zone, rate, size))
    _unique("nginx_rate_limits", [zone.zone for zone in zones])
    return zones


def check_rate_limit_status(variables: Mapping[str, Any]) -> int:
    """limit_req_status takes 400 to 599; 429 (Too Many Requests) is the one clients know."""
    status = variables.get("nginx_rate_limit_status", 429)
    if not isinstance(status, int) or isinstance(status, bool) or not 400 <= status <= 599:
        raise RoleError(f"nginx_rate_limit_status is {status!r}; nginx takes a status from 400 "
                        "to 599 (429 Too Many Requests is the usual one).")
    return status


def _list(variables: Mapping[str, Any], name: str) -> Sequence[Any]:
    items = variables.get(name) or []
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise RoleError(f"{name} must be a list.")
    return items


def _unique(variable: str, names: Sequence[str]) -> None:
    for name in names:
        if names.count(name) > 1:
            raise RoleError(f"{variable} defines {name!r} twice; each name must be unique.")
