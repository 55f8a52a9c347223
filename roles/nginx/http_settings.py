"""The http-level settings every site shares, checked before contact.

Each lands in nginx.conf or a headers snippet as written, so a value nginx cannot read would
fail ``nginx -t`` on the host with a line number in a file the user never wrote, and one that
reads as something else (a quote ending a header early) would do what the inventory did not
mean. Caught here, the error names the variable instead.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from provisioner.errors import RoleError
from roles.nginx.sites import check_header_value, read_headers

_TIME = re.compile(r"^[0-9]+(ms|s|m|h)?$")
_PORT = re.compile(r"^(?P<host>.+):(?P<port>[0-9]{1,5})$")
_DNS_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.?)+$")
TIMEOUTS = ("nginx_keepalive_timeout", "nginx_client_header_timeout",
            "nginx_client_body_timeout", "nginx_send_timeout", "nginx_proxy_connect_timeout")


def check_http_settings(variables: Mapping[str, Any]) -> None:
    """Refuse http-level values nginx would not read as meant."""
    _whole_number(variables, "nginx_hsts_max_age", 0, 2**31 - 1)
    _whole_number(variables, "nginx_worker_connections", 1, 65535)
    if not isinstance(variables["nginx_hsts_include_subdomains"], bool):
        raise RoleError(f"nginx_hsts_include_subdomains is "
                        f"{variables['nginx_hsts_include_subdomains']!r}; it is true or false.")
    read_headers("nginx_security_headers", variables["nginx_security_headers"])
    check_header_value("nginx_content_security_policy is",
                       variables["nginx_content_security_policy"])
    for name in TIMEOUTS:
        value = variables[name]
        if not isinstance(value, str | int) or isinstance(value, bool) or \
                not _TIME.fullmatch(str(value)):
            raise RoleError(f"{name} is {value!r}; it is a time nginx reads, such as 10s, "
                            "500ms or 1m.")
    _resolvers(variables["nginx_ocsp_resolvers"])


def _whole_number(variables: Mapping[str, Any], name: str, low: int, high: int) -> None:
    value = variables[name]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RoleError(f"{name} is {value!r}; it is a whole number from {low} to {high}.")


def _resolvers(given: Any) -> None:
    """nginx's resolver takes addresses or names, each optionally with a port."""
    if not isinstance(given, Sequence) or isinstance(given, str):
        raise RoleError(f"nginx_ocsp_resolvers is {given!r}; it is a list of DNS resolver "
                        "addresses, e.g. [127.0.0.53].")
    for resolver in given:
        if not isinstance(resolver, str) or not _is_resolver(resolver):
            raise RoleError(f"nginx_ocsp_resolvers has {resolver!r}; each is an IP address or "
                            "a host name of a DNS resolver, with a port or without, e.g. "
                            "127.0.0.53 or [::1]:53.")


def _is_resolver(value: str) -> bool:
    if _is_address(value) or _DNS_NAME.fullmatch(value):
        return True
    with_port = _PORT.fullmatch(value)
    if with_port is None or not 0 < int(with_port["port"]) < 65536:
        return False
    host = with_port["host"]
    if host.startswith("["):
        return host.endswith("]") and _is_address(host[1:-1])
    return _is_address(host) or bool(_DNS_NAME.fullmatch(host))


def _is_address(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
