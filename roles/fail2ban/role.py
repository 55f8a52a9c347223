"""fail2ban: ban addresses that keep failing SSH logins, and ban repeat offenders for longer.

Implements controls.md §4: jail.local from the inventory (bantime 3600, findtime 600, maxretry 5
by default), the journal backend where there is no auth.log, a recidive jail, and ignoreip for the
admin networks. The new jail.local is tested with ``fail2ban-client -t`` on a copy of the
configuration before it replaces the live one.
"""

from __future__ import annotations

from collections.abc import Iterator

from provisioner.host import Host
from provisioner.ops.apt import ensure_packages
from provisioner.ops.files import ensure_template
from provisioner.ops.systemd import ensure_service, restart_service
from provisioner.step import Step

#: A restart, not a reload: right after the service first starts, ``fail2ban-client reload``
#: fails while the server is still coming up. Bans survive a restart (fail2ban's own database).
HANDLERS = (restart_service("fail2ban.service"),)

#: Tests a candidate jail.local against a copy of /etc/fail2ban, so a bad one never goes live.
VALIDATE_JAIL = ("sh -c 'd=$(mktemp -d) && cp -a /etc/fail2ban/. \"$d\"/ && "
                 "cp \"$1\" \"$d/jail.local\" && fail2ban-client -c \"$d\" -t >/dev/null; "
                 "rc=$?; rm -rf \"$d\"; exit $rc' validate %s")


def steps(host: Host) -> Iterator[Step]:
    yield ensure_packages(host, host.vars["fail2ban_packages"])
    yield ensure_template(host, "/etc/fail2ban/jail.local", "etc/fail2ban/jail.local.j2",
                          validate=VALIDATE_JAIL, notify=["fail2ban:restart"],
                          label="template /etc/fail2ban/jail.local [controls §4]")
    yield ensure_service(host, "fail2ban.service")
