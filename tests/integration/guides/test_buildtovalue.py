"""BuildToValue v0.9 (seed guide 000) from inventories/buildtovalue.yml: the guide's single
server, checked the way its checklists and its "Security Hardening" section check it.

What the guide asks, and what this module proves from outside the host:
- UFW: deny incoming, only 22, 80 and 443 open, and 5432 only to Docker's bridge network:
  the API's container network reaches PostgreSQL at 172.17.0.1 with the role's password (and
  SCRAM: a wrong one is refused), while this controller's packets to 5432 are dropped and the
  host's own address, which the firewall lets through, is refused by pg_hba.conf;
  fail2ban bantime 3600 / findtime 600 / maxretry 5 on sshd, as the running jail reports them,
  and tried: four failed logins from one address are not banned, the fifth is, for 3600 s, and
  that address's next connection is refused while this controller still logs in.
- Secrets: a 256-bit JWT secret and HMAC key and a 20+ character database password generated
  on the host, 0600 in a 0700 directory, shown in no output, the same after another provision;
  `invoke secrets.rotate` changes the password, PostgreSQL and the running API take the new one
  (the old one is refused), and a plain provision after it keeps it and changes nothing.
- The API runs as a non-root user in its container, behind nginx with a certificate from the
  ACME server (Pebble, checked against its root), `/health` answering through it ("5. Verify
  Deployment"), and the rate limit as configured: 21 requests at once (burst 20), then 10
  a second, past that 429 (health checks never limited).
- The daily pg_dump at 02:00 is a timer; `invoke backup.now` then `invoke backup.verify`
  restore the latest dump into a scratch database with the table's rows counted.
- `invoke rollback` brings the previous version back through nginx, recorded as a rollback
  in the host's history.
- A converged provision changes nothing in one round trip, and `invoke verify` passes.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import subprocess
import time
from collections.abc import Callable

import pytest

from provisioner.commands import quote
from provisioner.sandbox.paths import KEY_PATH
from tests.integration.conftest import root_output
from tests.integration.guides.conftest import Guide, Release, Scenario

pytestmark = pytest.mark.integration

HOST = "btv1"
#: Docker's default bridge, the network the inventory opens PostgreSQL to, and the host on it.
BRIDGE = ipaddress.ip_network("172.17.0.0/16")
BRIDGE_HOST = "172.17.0.1"
SITE = "api.buildtovalue.example.org"
STORE = "/etc/provisioner/secrets"
#: The API's environment name of each host secret.
SECRETS = {"JWT_SECRET": "jwt_secret", "HMAC_KEY": "hmac_key", "DB_PASSWORD": "db_password"}
GUIDE = Guide(
    name="buildtovalue", prefix="gb", hosts=(HOST,), acme_names={SITE: HOST},
    releases=(Release("0.9.0"), Release("0.9.1")),
    # The test image listens on 8080 (the guide's API on 8000) and is healthy at once.
    overrides={"app_container_port": 8080, "app_health_timeout": 15},
)


@pytest.fixture(scope="module")
def btv(guides: dict[str, Scenario]) -> Scenario:
    return guides["buildtovalue"]


def root(btv: Scenario, command: str) -> str:
    return btv.root(HOST, command).strip()


def secret_digests(btv: Scenario) -> dict[str, str]:
    """Each host secret's SHA-256 (the values stay on the host)."""
    listing = root(btv, f"cd {STORE} && sha256sum {' '.join(SECRETS.values())}")
    return {line.split()[1]: line.split()[0] for line in listing.splitlines()}


def container_sees(btv: Scenario) -> dict[str, str]:
    """For each secret, whether the running API process (the container's PID 1, read from
    the host's /proc) has the host's current value in its environment ("same"/"differs"),
    compared on the host by the shell's builtin test (no value in any command line)."""
    checks = " ".join(
        f"if [ \"$(sed -n 's/^{variable}=//p' \"$environ\")\" = \"$(cat {STORE}/{name})\" ]; "
        f"then echo {variable} same; else echo {variable} differs; fi;"
        for variable, name in SECRETS.items())
    shown = root(btv, "c=$(docker ps -q --filter label=provisioner.app=btv); "
                      "[ $(echo \"$c\" | wc -w) = 1 ] || { echo \"containers: $c\"; exit 1; }; "
                      "environ=$(mktemp); trap 'rm -f \"$environ\"' EXIT; "
                      "tr '\\0' '\\n' < /proc/$(docker inspect -f '{{.State.Pid}}' $c)/environ "
                      "> \"$environ\"; " + checks)
    return dict(line.split() for line in shown.splitlines())


def served_version(btv: Scenario) -> str:
    answer = btv.curl(HOST, f"https://{SITE}/", "--fail")
    assert answer.returncode == 0, answer
    return answer.stdout.strip()


def database_login(btv: Scenario, password: str | None = None) -> str:
    """psql as btv over TCP (SCRAM) on the host: with the host's stored password, or with
    ``password`` given on stdin (never in a command line); what it printed, or the error."""
    source = f"$(cat {STORE}/db_password)" if password is None else "$(cat)"
    return root_output(btv.machines[HOST],
                       f"PGPASSWORD=\"{source}\" psql -X -h 127.0.0.1 -U btv -d btv_governance "
                       "-Atc 'SELECT current_user' 2>&1 || true", stdin=password).strip()


def test_the_first_provision_converges_the_server(btv: Scenario) -> None:
    assert btv.first_run is not None
    assert btv.first_run.exit_code == 0, btv.first_run.output[-6000:]
    assert set(btv.first_run.report["hosts"]) == {HOST}
    print(f"first provision of {HOST}: {btv.first_run.report['hosts'][HOST]['duration_seconds']} s")


def test_the_jwt_and_hmac_secrets_are_256_bit_and_the_password_20_plus_characters(
        btv: Scenario) -> None:
    shape = root(btv, f"cd {STORE} && for s in jwt_secret hmac_key db_password; do "
                      "printf '%s %s %s ' $s $(stat -c '%a %U' $s); "
                      "tr -d '\\n' < $s | wc -c; done; stat -c '%a %U' .")
    lines = shape.splitlines()
    assert lines[:3] == ["jwt_secret 600 root 64", "hmac_key 600 root 64",
                         "db_password 600 root 32"], shape
    assert lines[3] == "700 root"
    assert root(btv, f"grep -cE '^[0-9a-f]{{64}}$' {STORE}/jwt_secret {STORE}/hmac_key"
                ).split() == [f"{STORE}/jwt_secret:1", f"{STORE}/hmac_key:1"]
    assert btv.first_run is not None
    values = root(btv, f"cat {STORE}/jwt_secret {STORE}/hmac_key {STORE}/db_password").split()
    assert not [value for value in values if value in btv.first_run.output]


def test_a_second_provision_changes_nothing_and_keeps_every_secret(btv: Scenario) -> None:
    before = secret_digests(btv)

    again = btv.invoke("provision")

    assert again.exit_code == 0, again.output[-4000:]
    assert again.report["hosts"][HOST]["changed"] == 0, again.output[-4000:]
    assert secret_digests(btv) == before


def test_the_firewall_opens_ssh_http_and_https_and_postgresql_to_the_bridge_only(
        btv: Scenario) -> None:
    status = root(btv, "ufw status verbose")
    assert "Default: deny (incoming), allow (outgoing)" in status, status
    rules = [re.split(r"\s{2,}", line.strip()) for line in status.splitlines()
             if " ALLOW" in line or " LIMIT" in line]
    sources: dict[str, set[str]] = {}
    for to, _action, source, *_ in rules:
        sources.setdefault(to.removesuffix(" (v6)"), set()).add(source)
    assert set(sources) == {"22/tcp", "80/tcp", "443/tcp", "5432/tcp"}, status
    assert sources["5432/tcp"] == {str(BRIDGE)}, status  # from nowhere else, IPv6 included


def test_fail2ban_runs_the_guides_sshd_jail(btv: Scenario) -> None:
    jail = {setting: root(btv, f"fail2ban-client get sshd {setting}")
            for setting in ("bantime", "findtime", "maxretry")}

    assert jail == {"bantime": "3600", "findtime": "600", "maxretry": "5"}
    assert "Currently failed" in root(btv, "fail2ban-client status sshd")


def test_a_deploy_serves_health_through_nginx_with_the_acme_certificate(btv: Scenario) -> None:
    deploy = btv.invoke("deploy", "--version", "0.9.0")

    assert deploy.exit_code == 0, deploy.output[-4000:]
    health = btv.curl(HOST, f"https://{SITE}/health", "--fail")
    assert (health.returncode, health.stdout.strip()) == (0, "ok 0.9.0"), health
    issuer = root(btv, "openssl x509 -noout -issuer -in /etc/letsencrypt/live/btv/cert.pem")
    assert "Pebble" in issuer, issuer
    plain = btv.curl(HOST, f"http://{SITE}/health", "-o", "/dev/null", "-w", "%{http_code}")
    assert plain.stdout == "308", plain


def test_the_api_container_runs_as_a_non_root_user(btv: Scenario) -> None:
    container = root(btv, "docker ps -q --filter label=provisioner.app=btv")

    assert root(btv, f"docker inspect -f '{{{{.Config.User}}}}' {container}") == "10001:10001"
    assert root(btv, f"docker exec {container} /bin/busybox id -u") == "10001"
    owners = root(btv, f"docker top {container}").splitlines()[1:]
    assert owners and all(line.split()[0] in {"10001", "btv"} for line in owners), owners


def in_container_network(btv: Scenario, command: str) -> str:
    """``command`` run on the host inside the API container's network namespace: the host's
    own programs (ssh), but from the container's address on Docker's bridge, which is neither
    this controller (exempt from bans) nor one of the host's own (fail2ban ignores those)."""
    pid = root(btv, "docker inspect -f '{{.State.Pid}}' "
                    "$(docker ps -q --filter label=provisioner.app=btv)")
    return root(btv, f"nsenter --net=/proc/{pid}/ns/net sh -c {quote(command)}")


def jail_status(btv: Scenario) -> dict[str, str]:
    """fail2ban's sshd jail as its status prints it: "Total failed", "Banned IP list", ..."""
    shown = root(btv, "fail2ban-client status sshd")
    return {key.strip("|-` \t"): value.strip() for key, _, value in
            (line.partition(":") for line in shown.splitlines()[1:]) if value}


def within(seconds: float, condition: Callable[[], bool]) -> bool:
    """Whether ``condition`` holds before the deadline (fail2ban reads the journal a moment
    after sshd writes it)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def test_five_failed_logins_within_ten_minutes_ban_the_address_for_an_hour(
        btv: Scenario) -> None:
    attacker = in_container_network(btv, "ip -4 -o addr show eth0").split()[3].split("/")[0]
    failed_login = (f"timeout 10 ssh -F /dev/null -o BatchMode=yes -o ConnectTimeout=3 "
                    f"-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                    f"nosuchuser@{btv.address(HOST)} true 2>&1; true")
    root(btv, f"fail2ban-client unban {attacker} >/dev/null; true")
    counted = int(jail_status(btv)["Total failed"])
    try:
        for _ in range(4):
            assert "Permission denied" in in_container_network(btv, failed_login)
        assert within(20, lambda: int(jail_status(btv)["Total failed"]) >= counted + 4)
        assert attacker not in jail_status(btv).get("Banned IP list", "")  # four are not enough

        in_container_network(btv, failed_login)

        assert within(20, lambda: attacker in jail_status(btv).get("Banned IP list", ""))
        assert root(btv, f"fail2ban-client get sshd banip --with-time | grep -F '{attacker} '"
                    ).split("+")[1].split()[0] == "3600"
        assert "Connection refused" in in_container_network(btv, failed_login)
        still_in = subprocess.run(
            ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
             "-i", str(KEY_PATH), f"admin@{btv.address(HOST)}", "true"],
            capture_output=True, text=True, check=False, timeout=30)
        assert still_in.returncode == 0, still_in.stderr  # the ban is that address's alone
    finally:
        root(btv, f"fail2ban-client unban {attacker} >/dev/null; true")


def test_the_api_gets_the_host_secrets_in_its_environment(btv: Scenario) -> None:
    assert container_sees(btv) == {variable: "same" for variable in SECRETS}
    assert database_login(btv) == "btv"


def postgres_login(password: str, address: str) -> str:
    """psql as btv to ``address`` over TCP; ``password`` is shell text (``$(cat FILE)`` keeps
    the value out of every command line); what it printed (client address), or the error."""
    return (f"PGPASSWORD=\"{password}\" PGCONNECT_TIMEOUT=10 psql -X -h {address} -U btv "
            "-d btv_governance -Atc 'SELECT current_user, inet_client_addr()' 2>&1 || true")


def test_the_api_containers_network_reaches_postgresql_and_no_other_network_does(
        btv: Scenario) -> None:
    stored = f"$(cat {STORE}/db_password)"

    from_container = in_container_network(btv, postgres_login(stored, BRIDGE_HOST))
    wrong_password = in_container_network(btv, postgres_login("not-the-password", BRIDGE_HOST))
    from_host_address = root(btv, postgres_login(stored, btv.address(HOST)))

    user, _, client = from_container.partition("|")
    assert user == "btv", from_container
    assert ipaddress.ip_address(client) in BRIDGE, from_container  # the container's address
    assert 'password authentication failed for user "btv"' in wrong_password, wrong_password
    # The host's own address is not the bridge's network: the firewall lets it through (the
    # host talks to itself on lo), and pg_hba.conf refuses it.
    assert f'no pg_hba.conf entry for host "{btv.address(HOST)}"' in from_host_address, \
        from_host_address
    # PostgreSQL listens on every address now, so this controller's SYN reaching it would be
    # refused or answered: dropped (no answer at all), it is the firewall that keeps it out.
    with pytest.raises(TimeoutError), socket.create_connection((btv.address(HOST), 5432),
                                                               timeout=3):
        pass


def test_a_burst_past_the_rate_limit_is_answered_429(btv: Scenario) -> None:
    codes = []
    connection = btv.https(HOST, SITE)
    started = time.monotonic()
    try:
        while 429 not in codes and len(codes) < 300:  # one connection, as fast as it goes
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            codes.append(response.status)
    finally:
        connection.close()
    elapsed = time.monotonic() - started

    assert codes[-1] == 429 and set(codes[:-1]) == {200}, codes
    # 10 r/s with a burst of 20 (nodelay): the first 21 pass at once, then one per 100 ms.
    assert 21 <= len(codes) - 1 <= 21 + 10 * elapsed + 1, (len(codes), elapsed)
    health = btv.curl(HOST, f"https://{SITE}/health", "--fail")
    assert health.returncode == 0, health  # health checks are never limited


def test_a_rotation_gives_postgresql_and_the_api_the_new_password(btv: Scenario) -> None:
    before = secret_digests(btv)
    old = root(btv, f"cat {STORE}/db_password")

    rotated = btv.invoke("secrets.rotate", "--host", HOST, "--name", "db_password")

    assert rotated.exit_code == 0, rotated.output[-4000:]
    after = secret_digests(btv)
    assert after["db_password"] != before["db_password"]
    assert {name: after[name] for name in ("jwt_secret", "hmac_key")} == \
        {name: before[name] for name in ("jwt_secret", "hmac_key")}
    assert container_sees(btv) == {variable: "same" for variable in SECRETS}
    assert database_login(btv) == "btv"
    assert "password authentication failed" in database_login(btv, old)
    assert old not in rotated.output
    assert served_version(btv) == "0.9.0"


def test_a_plain_provision_after_the_rotation_keeps_it_in_one_round_trip(btv: Scenario) -> None:
    rotated = secret_digests(btv)

    again = btv.invoke("provision")

    assert again.exit_code == 0, again.output[-4000:]
    result = again.report["hosts"][HOST]
    assert (result["changed"], result["round_trips"]) == (0, 1), again.output[-4000:]
    assert secret_digests(btv) == rotated


def test_the_daily_dump_runs_at_two_and_restores(btv: Scenario) -> None:
    timer = root(btv, "systemctl is-active provisioner-backup.timer; "
                      "systemctl show -p TimersCalendar --value provisioner-backup.timer")
    assert timer.startswith("active") and "OnCalendar=*-*-* 02:00:00" in timer, timer
    root(btv, "cd / && runuser -u postgres -- psql -X -q "
              "-v ON_ERROR_STOP=1 -d btv_governance -c "
              + quote("CREATE TABLE IF NOT EXISTS ai_systems (id serial PRIMARY KEY, "
                      "name text NOT NULL); TRUNCATE ai_systems; INSERT INTO ai_systems (name) "
                      "SELECT 'system ' || n FROM generate_series(1, 42) n; "
                      "ALTER TABLE ai_systems OWNER TO btv"))

    dumped = btv.invoke("backup.now", "--host", HOST)
    verified = btv.invoke("backup.verify", "--host", HOST)

    assert dumped.exit_code == 0, dumped.output
    (archive,) = re.findall(r"archive (\S+-ondemand): globals\.sql btv_governance\.dump",
                            dumped.output)
    assert verified.exit_code == 0, verified.output
    assert f"restore test of {archive} passed: btv_governance (public.ai_systems 42)" in \
        verified.output, verified.output
    assert root(btv, f"ls /var/backups/btv/{archive}").split() == [
        "btv_governance.dump", "btv_governance.meta", "globals.sql"]


def test_rollback_brings_the_previous_version_back(btv: Scenario) -> None:
    upgraded = btv.invoke("deploy", "--version", "0.9.1")
    assert upgraded.exit_code == 0, upgraded.output[-4000:]
    assert served_version(btv) == "0.9.1"

    rolled_back = btv.invoke("rollback")

    assert rolled_back.exit_code == 0, rolled_back.output[-4000:]
    assert served_version(btv) == "0.9.0"
    history = btv.invoke("deploy.history", "--limit", "1")
    assert re.search(r"\brollback +0\.9\.0 +from 0\.9\.1 +ok\b", history.output), history.output


def test_every_spec_passes(btv: Scenario) -> None:
    verified = btv.invoke("verify", timeout=600)

    assert verified.exit_code == 0, verified.output[-4000:]
