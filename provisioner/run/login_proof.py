"""Proving a guarded change: a brand-new SSH login with the inventory's own credentials.

The walk (walk.py, through proofs.py) calls this after a role's handlers ran; a refused login
reverts the change. How many logins a proof may make is bounded by the host's own ban rules.
"""

from __future__ import annotations

import time

from provisioner.errors import LoginRefused, ProvisionerError
from provisioner.inventory.hosts import HostConfig

#: Seconds before each new try of a login that never reached authentication. The first covers a
#: reloaded sshd still rebinding; the second outlasts an SSH rate limit's window (ufw's limit:
#: 6 new connections in 30 s, which quick runs in a row can reach), since every try inside the
#: window would count again. A refused login is never tried again: it is final, and each
#: refusal would count toward the host's ban rules (fail2ban's maxretry).
RETRY_AFTER = (2.0, 32.0)


def prove_new_login(config: HostConfig) -> int:
    """Log in afresh with the inventory's own credentials and run a command as root.

    Returns the round trips the proof made. Always a new login, never a kept one: a kept login
    would prove nothing about the next. A good change must not be reverted because sshd took a
    moment to listen again, or a rate limit held a new connection back: RETRY_AFTER.
    """
    from provisioner.transport.connection import Connection

    round_trips = 0
    for attempt in range(len(RETRY_AFTER) + 1):
        try:
            fresh = Connection(config)
        except LoginRefused:
            raise
        except ProvisionerError as error:
            if attempt == len(RETRY_AFTER):
                raise ProvisionerError(f"{error} (tried {attempt + 1} times over "
                                       f"{sum(RETRY_AFTER):.0f} s; if the host limits new SSH "
                                       "connections, as ufw's limit rule does, list this "
                                       "controller in ufw_ssh_unlimited_sources)") from None
            time.sleep(RETRY_AFTER[attempt])
            continue
        try:
            round_trips += 1
            answer = fresh.run_script("id -u", timeout=30)
        finally:
            fresh.close()
        if answer.exit_code != 0 or answer.stdout.strip() != "0":
            said = (answer.stderr or answer.stdout).strip()[-200:]
            raise LoginRefused(f"the login worked but running a command as root did not "
                               f"(exit {answer.exit_code}: {said})")
        return round_trips
    raise AssertionError("unreachable")
