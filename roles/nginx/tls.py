"""What the host's nginx and OpenSSL are, and which certificates are there: read in the same
probe as the configuration, so the TLS settings follow the host and not an assumed release.

Mozilla's generator (controls.md §8.2) writes ``listen 443 ssl; http2 on;`` from nginx 1.25.1
(before it, ``listen 443 ssl http2``), ``ssl_session_tickets off`` for 1.5.9 <= nginx < 1.23.2
(older ones could not rotate the ticket key), and offers X25519MLKEM768 only from OpenSSL 3.5.
OpenSSL is the one nginx runs with (``nginx -V``: "running with", else "built with"). A site's
TLS server block needs its certificate and key (nginx -t fails on a missing file), so both are
tested here; the OCSP URL is read from the certificate because stapling without one only warns
on every reload (Pebble's, self-signed and Let's Encrypt's certificates since 2025 have none).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from provisioner.commands import quote
from provisioner.step import ProbeUnreadable
from roles.nginx.sites import Site, certificate_paths

CIPHERS = ("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
           "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
           "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305")
END = "== nginx config set =="
_NGINX = re.compile(r"nginx version: nginx/(\d+)\.(\d+)\.(\d+)")
_RUNNING = re.compile(r"running with OpenSSL (\d+)\.(\d+)\.(\d+)")
_BUILT = re.compile(r"built with OpenSSL (\d+)\.(\d+)\.(\d+)")


@dataclass(frozen=True)
class HostTls:
    """The host's versions and, per site name, its certificate's OCSP URL ('' for none) when
    both its files exist."""

    nginx: tuple[int, int, int]
    openssl: tuple[int, int, int]
    certificates: dict[str, str] = field(default_factory=dict)
    ipv6: bool = True

    @property
    def http2_directive(self) -> bool:
        """``http2 on;`` (nginx >= 1.25.1) rather than the listen parameter."""
        return self.nginx >= (1, 25, 1)

    @property
    def session_tickets_off(self) -> bool:
        return (1, 5, 9) <= self.nginx < (1, 23, 2)

    @property
    def curves(self) -> str:
        base = "X25519:prime256v1:secp384r1"
        return f"X25519MLKEM768:{base}" if self.openssl >= (3, 5, 0) else base

    def has_certificate(self, site: Site) -> bool:
        return site.name in self.certificates

    def ocsp_url(self, site: Site) -> str:
        return self.certificates.get(site.name, "")


def probe_host_tls(sites: Sequence[Site]) -> str:
    """Read-only shell: nginx -V's version lines, one ``cert`` line per site, ``ipv6``."""
    lines = ["if command -v nginx >/dev/null 2>&1; then nginx -V 2>&1 | "
             "grep -E 'nginx version|OpenSSL'; else echo 'nginx missing'; fi"]
    for site in sites:
        chain, key = (quote(path) for path in certificate_paths(site))
        lines.append(f"if [ -s {chain} ] && [ -s {key} ]; then printf 'cert %s %s\\n' "
                     f"{quote(site.name)} \"$(openssl x509 -noout -ocsp_uri -in {chain} "
                     "2>/dev/null | head -n 1)\"; fi")
    lines.append("if [ -e /proc/net/if_inet6 ]; then echo ipv6; fi")
    lines.append(f"echo {quote(END)}")
    return "\n".join(lines) + "\n"


def parse_host_tls(output: str) -> tuple[HostTls, str]:
    """probe_host_tls's part of the output as HostTls, and the rest (the config set's answer).
    ProbeUnreadable before nginx is installed (check mode on a fresh host)."""
    head, marker, rest = output.partition(END + "\n")
    if not marker:
        raise ProbeUnreadable("the nginx configuration's probe was cut off")
    nginx = _NGINX.search(head)
    openssl = _RUNNING.search(head) or _BUILT.search(head)
    if nginx is None or openssl is None:
        raise ProbeUnreadable("nginx is not installed yet (nginx -V gave no version)")
    certificates = {}
    for line in head.splitlines():
        if line.startswith("cert "):
            _, name, *url = line.split(" ", 2)
            certificates[name] = url[0].strip() if url else ""
    return HostTls(_version(nginx), _version(openssl), certificates,
                   "ipv6" in head.splitlines()), rest


def _version(match: re.Match[str]) -> tuple[int, int, int]:
    return int(match.group(1)), int(match.group(2)), int(match.group(3))
