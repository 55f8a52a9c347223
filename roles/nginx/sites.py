"""nginx sites from the inventory: validated before contact, and where each one's certificate is.

A site is the unit both the nginx role (its server blocks) and the certbot role (its certificate,
named after the site) work on, so its shape and its certificate paths live here, in one place.
Every mistake is a RoleError naming the site and the field, raised before any host is contacted:
nginx would otherwise refuse the whole configuration on the host, or worse accept one that does
not do what the inventory meant (a rate limit on a zone that is not there).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from provisioner.errors import RoleError

#: The port-80 server serves this directory's /.well-known/acme-challenge/ for every site.
ACME_WEBROOT = "/var/www/letsencrypt"
CERTIFICATE_SOURCES = ("acme", "self-signed", "files")
TLS_DIRECTORY = "/etc/nginx/tls"
LETSENCRYPT_LIVE = "/etc/letsencrypt/live"

_SITE_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_SIZE = re.compile(r"^[0-9]+[kKmMgG]?$")
_TIME = re.compile(r"^[0-9]+(ms|s|m|h|d)?$")
_PATH = re.compile(r"^/[A-Za-z0-9._~!$&'()*+,=:@%/-]*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_HEADER_VALUE = re.compile(r'^[^"\\$\x00-\x1f\x7f]*$')


@dataclass(frozen=True)
class RateLimit:
    """limit_req in one location: a zone of nginx_rate_limits, its burst, nodelay or not."""

    zone: str
    burst: int = 0
    nodelay: bool = False


@dataclass(frozen=True)
class Location:
    """One location of a site, proxied to an upstream of nginx_upstreams."""

    path: str
    upstream: str
    rate_limit: RateLimit | None = None
    websocket: bool = False
    read_timeout: str = "60s"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Site:
    """One site: its names, its certificate's source, its locations."""

    name: str
    server_names: tuple[str, ...]
    certificate: str
    locations: tuple[Location, ...] = ()
    client_max_body_size: str = "10m"
    content_security_policy: str = ""
    health_path: str = ""
    #: (certificate, key) PEM text for ``files``; kept out of repr (the key is a secret).
    certificate_files: tuple[str, str] | None = field(default=None, repr=False)


def certificate_paths(site: Site) -> tuple[str, str]:
    """(full chain, private key) nginx reads for the site: certbot's live lineage for acme,
    the role's own directory otherwise."""
    if site.certificate == "acme":
        base = f"{LETSENCRYPT_LIVE}/{site.name}"
    else:
        base = f"{TLS_DIRECTORY}/{site.name}"
    return f"{base}/fullchain.pem", f"{base}/privkey.pem"


def read_sites(variables: Mapping[str, Any]) -> list[Site]:
    """nginx_sites as Sites, every field checked (RoleError naming the site and field)."""
    given = variables.get("nginx_sites") or []
    if not isinstance(given, Sequence) or isinstance(given, str):
        raise RoleError("nginx_sites must be a list of sites (each a mapping with name, "
                        "server_names, certificate and locations).")
    upstreams = _names(variables.get("nginx_upstreams"), "name")
    zones = _names(variables.get("nginx_rate_limits"), "zone")
    sites = [_site(index, item, upstreams, zones) for index, item in enumerate(given)]
    _check_unique(sites)
    return sites


def _names(items: Any, key: str) -> set[str]:
    if not isinstance(items, Sequence) or isinstance(items, str):
        return set()
    return {str(item[key]) for item in items if isinstance(item, Mapping) and key in item}


def _site(index: int, item: Any, upstreams: set[str], zones: set[str]) -> Site:
    if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
        raise RoleError(f"nginx_sites[{index}] must be a mapping with a name (a file and "
                        "certificate name such as 'shop').")
    name = item["name"]
    if not _SITE_NAME.fullmatch(name):
        raise RoleError(f"nginx_sites: site name {name!r} is not a usable file and certificate "
                        "name: use lower-case letters, digits, '.', '_' and '-' (at most 63).")
    unknown = sorted(set(item) - _SITE_FIELDS)
    if unknown:
        raise RoleError(f"nginx_sites: site {name!r} has unknown fields {', '.join(unknown)}; "
                        f"a site has {', '.join(sorted(_SITE_FIELDS))}.")
    certificate = _certificate_source(name, item)
    locations = _locations(name, item.get("locations"), upstreams, zones)
    health = item.get("health_path") or ""
    if health:
        _check_path(name, "health_path", health)
    return Site(name, _server_names(name, item.get("server_names")), certificate,
                locations,
                _checked(name, "client_max_body_size", item.get("client_max_body_size", "10m"),
                         _SIZE, "a size such as 10m or 512k"),
                _header_value(name, "content_security_policy",
                              item.get("content_security_policy") or ""),
                health, _certificate_files(name, certificate, item.get("certificate_files")))


_SITE_FIELDS = {"name", "server_names", "certificate", "certificate_files", "locations",
                "client_max_body_size", "content_security_policy", "health_path"}
_LOCATION_FIELDS = {"path", "upstream", "rate_limit", "websocket", "read_timeout", "headers"}


def _certificate_source(name: str, item: Mapping[str, Any]) -> str:
    source = item.get("certificate")
    if source not in CERTIFICATE_SOURCES:
        raise RoleError(f"nginx_sites: site {name!r} has certificate {source!r}; it must be one "
                        "of acme (certbot, for public names), self-signed (made on the host) or "
                        "files (certificate_files given as secrets).")
    return str(source)


def _certificate_files(name: str, source: str, given: Any) -> tuple[str, str] | None:
    if source != "files":
        if given:
            raise RoleError(f"nginx_sites: site {name!r} has certificate_files but its "
                            f"certificate is {source!r}: drop them, or set certificate: files.")
        return None
    if not isinstance(given, Mapping) or not given.get("certificate") or not given.get("key"):
        raise RoleError(f"nginx_sites: site {name!r} has certificate: files but no "
                        "certificate_files with both certificate (the full chain, PEM) and key "
                        "(a secret reference, e.g. {secret: file:~/.secrets/shop.key}).")
    return str(given["certificate"]), str(given["key"])


def _server_names(name: str, given: Any) -> tuple[str, ...]:
    if not isinstance(given, Sequence) or isinstance(given, str) or not given:
        raise RoleError(f"nginx_sites: site {name!r} needs server_names, a list of at least "
                        "one DNS name (e.g. [shop.example.test]).")
    for server_name in given:
        if not _is_dns_name(server_name):
            raise RoleError(f"nginx_sites: site {name!r} has server name {server_name!r}, which "
                            "is not a DNS name: use lower-case labels of letters, digits and "
                            "'-', separated by dots (no wildcard, no port, no scheme).")
    return tuple(given)


def _is_dns_name(value: Any) -> bool:
    """A host name with a dot; not an address (no top-level domain is all digits, and no
    certificate authority issues for 10.0.0.1 by HTTP-01 through nginx's server_name)."""
    if not isinstance(value, str) or len(value) > 253 or "." not in value:
        return False
    labels = value.split(".")
    return all(_LABEL.fullmatch(label) for label in labels) and not labels[-1].isdigit()


def _locations(name: str, given: Any, upstreams: set[str],
               zones: set[str]) -> tuple[Location, ...]:
    if not isinstance(given, Sequence) or isinstance(given, str) or not given:
        raise RoleError(f"nginx_sites: site {name!r} needs locations, a list of at least one "
                        "{path, upstream}.")
    locations = tuple(_location(name, item, upstreams, zones) for item in given)
    paths = [location.path for location in locations]
    for path in paths:
        if paths.count(path) > 1:
            raise RoleError(f"nginx_sites: site {name!r} lists location {path!r} twice; nginx "
                            "refuses a duplicate location.")
    return locations


def _location(name: str, item: Any, upstreams: set[str], zones: set[str]) -> Location:
    if not isinstance(item, Mapping) or not isinstance(item.get("path"), str):
        raise RoleError(f"nginx_sites: site {name!r} has a location without a path: each "
                        "location is {path: /api/, upstream: api, ...}.")
    path = _check_path(name, "locations path", item["path"])
    where = f"site {name!r} location {path!r}"
    unknown = sorted(set(item) - _LOCATION_FIELDS)
    if unknown:
        raise RoleError(f"nginx_sites: {where} has unknown fields {', '.join(unknown)}; a "
                        f"location has {', '.join(sorted(_LOCATION_FIELDS))}.")
    upstream = item.get("upstream")
    if upstream not in upstreams:
        known = ", ".join(sorted(upstreams)) or "none"
        raise RoleError(f"nginx_sites: {where} names upstream {upstream!r}, which nginx_upstreams "
                        f"does not define (it defines {known}): add it there or fix the name.")
    websocket = item.get("websocket", False)
    if not isinstance(websocket, bool):
        raise RoleError(f"nginx_sites: {where} has websocket {websocket!r}; it is true or false.")
    return Location(path, str(upstream), _rate_limit(where, item.get("rate_limit"), zones),
                    websocket,
                    _checked(name, f"location {path!r} read_timeout",
                             item.get("read_timeout", "60s"), _TIME, "a time such as 60s or 5m"),
                    _headers(where, item.get("headers")))


def _check_path(name: str, what: str, path: Any) -> str:
    if not isinstance(path, str) or not _PATH.fullmatch(path):
        raise RoleError(f"nginx_sites: site {name!r} has {what} {path!r}; it must be a URL path "
                        "starting with '/' (no spaces, quotes, ';' or braces).")
    return path


def _rate_limit(where: str, given: Any, zones: set[str]) -> RateLimit | None:
    if given is None:
        return None
    if not isinstance(given, Mapping) or given.get("zone") not in zones:
        zone = given.get("zone") if isinstance(given, Mapping) else given
        known = ", ".join(sorted(zones)) or "none"
        raise RoleError(f"nginx_sites: {where} has rate_limit zone {zone!r}, which "
                        f"nginx_rate_limits does not define (it defines {known}).")
    burst, nodelay = given.get("burst", 0), given.get("nodelay", False)
    if not isinstance(burst, int) or isinstance(burst, bool) or burst < 0:
        raise RoleError(f"nginx_sites: {where} has rate_limit burst {burst!r}; it is a whole "
                        "number of requests, 0 or more.")
    if not isinstance(nodelay, bool):
        raise RoleError(f"nginx_sites: {where} has rate_limit nodelay {nodelay!r}; it is true "
                        "or false.")
    return RateLimit(str(given["zone"]), burst, nodelay)


def _headers(where: str, given: Any) -> tuple[tuple[str, str], ...]:
    return read_headers(f"nginx_sites: {where}", given)


def read_headers(owner: str, given: Any) -> tuple[tuple[str, str], ...]:
    """A mapping of header name to value as add_header lines take them: each value goes
    between double quotes, so a quote, a backslash or a line break in it would end the
    directive early (nginx -t refuses it, or worse reads the rest as directives), and nginx
    reads a ``$`` as the start of a variable ("costs $5" would be sent as "costs ")."""
    if not given:
        return ()
    if not isinstance(given, Mapping):
        raise RoleError(f"{owner} has headers {given!r}; it is a mapping of header name to "
                        "value.")
    for header, value in given.items():
        if not isinstance(header, str) or not _HEADER_NAME.fullmatch(header) or \
                not isinstance(value, str | int) or isinstance(value, bool) or \
                not _HEADER_VALUE.fullmatch(str(value)):
            raise RoleError(f"{owner} has header {header!r}: {value!r}; a header name is a "
                            "token and its value has no quotes, backslashes, '$' (nginx "
                            "would read a variable) or control characters such as a line "
                            "break (a YAML block scalar ends in one: use quotes or >-).")
    return tuple((str(header), str(value)) for header, value in given.items())


def check_header_value(owner: str, value: Any) -> str:
    """One header value (a CSP) for add_header's double quotes; see read_headers."""
    if not isinstance(value, str) or not _HEADER_VALUE.fullmatch(value):
        raise RoleError(f"{owner} {value!r}; it is a header value without quotes, backslashes, "
                        "'$' (nginx would read a variable) or control characters such as a line "
                        "break (a YAML block scalar ends in one: use quotes or >-).")
    return value


def _header_value(name: str, what: str, value: Any) -> str:
    return check_header_value(f"nginx_sites: site {name!r} has {what}", value)


def _checked(name: str, what: str, value: Any, pattern: re.Pattern[str], shape: str) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool) or \
            not pattern.fullmatch(str(value)):
        raise RoleError(f"nginx_sites: site {name!r} has {what} {value!r}; it must be {shape}.")
    return str(value)


def _check_unique(sites: Sequence[Site]) -> None:
    """Two sites of one name would write one file; one server name in two sites would make
    nginx warn and serve only the first (and certbot issue it twice)."""
    seen: dict[str, str] = {}
    names: set[str] = set()
    for site in sites:
        if site.name in names:
            raise RoleError(f"nginx_sites: two sites are named {site.name!r}; a site's name is "
                            "its file and certificate name, so each must be unique.")
        names.add(site.name)
        for server_name in site.server_names:
            if server_name in seen:
                raise RoleError(f"nginx_sites: server name {server_name!r} is in site "
                                f"{seen[server_name]!r} and in site {site.name!r}; a name "
                                "belongs to one site.")
            seen[server_name] = site.name
