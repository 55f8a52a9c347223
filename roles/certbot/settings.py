"""The certbot role's variables judged before contact, and what the host's roles must be.

Everything here is decided from the inventory alone, so a mistake (a missing e-mail, a
directory URL that is not https, a CA that is not PEM, certbot without nginx before it) stops
the run before any host is contacted, with the variable named.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from provisioner.errors import RoleError

KEY_TYPES = ("ecdsa", "rsa")
PEM_BLOCK = re.compile(r"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----",
                       re.DOTALL)
#: Enough of an address for an ACME account: certbot refuses the rest itself, later.
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"


def check_email(email: Any, acme_sites: Sequence[str]) -> None:
    """An account e-mail whenever a site's certificate comes from the ACME server."""
    if not acme_sites:
        return
    if not isinstance(email, str) or not email:
        raise RoleError(f"certbot_email is not set, but nginx_sites {', '.join(acme_sites)} "
                        f"{'uses' if len(acme_sites) == 1 else 'use'} certificate: acme: the "
                        "ACME account needs an address for expiry and account notices; set "
                        "certbot_email (e.g. ops@example.org).")
    if not EMAIL.fullmatch(email):
        raise RoleError(f"certbot_email {email!r} is not an e-mail address (name@domain); "
                        "the ACME server refuses the account without one.")


def check_server(server: Any) -> None:
    """An https URL: certbot talks to the directory over TLS only."""
    parts = urlsplit(server) if isinstance(server, str) else None
    if parts is None or parts.scheme != "https" or not parts.hostname:
        raise RoleError(f"certbot_server {server!r} is not an https URL of an ACME directory: "
                        "leave it unset for Let's Encrypt, use "
                        f"{STAGING} for its staging server, or give an RFC 8555 server's "
                        "directory (e.g. https://pebble.example.test:14000/dir).")


def check_server_ca(pem: Any) -> None:
    """Empty, or PEM certificates only (written to the host as the CA bundle certbot trusts)."""
    if pem == "":
        return
    blocks = PEM_BLOCK.findall(pem) if isinstance(pem, str) else []
    rest = PEM_BLOCK.sub("", pem).strip() if isinstance(pem, str) else "?"
    if not blocks or rest or not all(_base64(block) for block in blocks):
        raise RoleError("certbot_server_ca is not a PEM certificate (-----BEGIN CERTIFICATE-----"
                        " ... -----END CERTIFICATE-----, nothing else): give the ACME server's "
                        "CA as PEM text, or leave it empty to trust the system's CAs.")


def _base64(body: str) -> bool:
    try:
        return bool(base64.b64decode("".join(body.split()), validate=True))
    except (binascii.Error, ValueError):
        return False


def check_key_type(key_type: Any) -> None:
    if key_type not in KEY_TYPES:
        raise RoleError(f"certbot_key_type {key_type!r} is none of {', '.join(KEY_TYPES)}.")


def check_roles_order(host: str, roles: Sequence[str]) -> None:
    """nginx before certbot: certbot's webroot is served by nginx's port-80 server, and the
    TLS blocks certbot brings live are nginx's."""
    if "nginx" not in roles:
        raise RoleError(f"host {host} has the certbot role but not the nginx role: certbot "
                        "issues by webroot through nginx's port-80 server; add nginx to the "
                        "host's roles, before certbot.")
    if roles.index("nginx") > roles.index("certbot"):
        raise RoleError(f"host {host} lists certbot before nginx in its roles "
                        f"({', '.join(roles)}): certbot needs nginx's port-80 server first; "
                        "put nginx before certbot.")


def check_variables(variables: Mapping[str, Any], acme_sites: Sequence[str]) -> None:
    """Every certbot variable, before contact."""
    check_email(variables["certbot_email"], acme_sites)
    check_server(variables["certbot_server"])
    check_server_ca(variables["certbot_server_ca"])
    check_key_type(variables["certbot_key_type"])
