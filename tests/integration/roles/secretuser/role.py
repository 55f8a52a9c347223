"""A test role that consumes host secrets the way an application's environment file would: a
template renders a DSN with the database password and a signing key, 0600."""

from __future__ import annotations

from collections.abc import Iterator

from provisioner.host import Host
from provisioner.ops.files import ensure_template
from provisioner.step import Step

ENV_FILE = "/etc/secretuser/app.env"


def steps(host: Host) -> Iterator[Step]:
    yield ensure_template(host, ENV_FILE, "etc/secretuser/app.env.j2", mode=0o600)
