"""One acme site's certificate: what its lineage holds on the host, and the certbot call that
brings it to the site's names and ACME server.

The probe reads the lineage's renewal conf (server, deploy hook, key type) and the names of its
live certificate in one snippet, so a converged run decides every site from the walk's batched
probes and costs no round trip of its own. The decision is pure: a lineage holding exactly the
site's names, issued by the configured server with our deploy hook and key type, is left alone
(certbot would only say "not yet due for renewal"); anything else reissues the same lineage
(``--cert-name``), new names by the changed ``-d`` list, a new server or hook by
``--force-renewal`` (certbot keeps a lineage that is not due otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from provisioner.commands import join, quote
from provisioner.step import Plan, Probed, Step

LIVE = "/etc/letsencrypt/live"
ARCHIVE = "/etc/letsencrypt/archive"
RENEWAL = "/etc/letsencrypt/renewal"
LOG = "/var/log/letsencrypt/letsencrypt.log"
#: The renewal conf keys the decision reads (renew_hook is how certbot stores --deploy-hook).
CONF_KEYS = ("server", "renew_hook", "key_type", "authenticator")
#: What a failed issuance shows: certbot's output without these lines (they say nothing about
#: this failure), at most OUTPUT_LINES of it, and when it holds no CA detail, the last
#: LOG_LINES error lines of certbot's log.
NOISE = ("^Saving debug log", "^Ask for help", "^Hint:", "^$")
OUTPUT_LINES = 30
LOG_ERRORS = r"(:ERROR:|acme:error|[Dd]etail)"
LOG_LINES = 8


@dataclass(frozen=True)
class Wanted:
    """What one acme site's lineage must be."""

    name: str
    domains: tuple[str, ...]
    server: str
    email: str
    webroot: str
    deploy_hook: str
    key_type: str
    #: Where certbot finds the ACME server's CA (REQUESTS_CA_BUNDLE), "" for the system's.
    ca_bundle: str = ""


@dataclass(frozen=True)
class Lineage:
    """What the host holds for one cert name: its renewal conf's keys and its names."""

    conf: dict[str, str]
    names: frozenset[str]
    has_certificate: bool
    #: Whether anything of the lineage is there (live/, archive/ or the renewal conf): with a
    #: piece missing, certbot would not reuse the name but start NAME-0001 beside it.
    has_remnants: bool = False

    @property
    def damaged(self) -> bool:
        return self.has_remnants and not (self.has_certificate and self.conf)


def lineage_probe(name: str) -> str:
    """Read-only: whether any of the lineage is there, the renewal conf's keys, then the live
    certificate's subjectAltName."""
    conf, cert = f"{RENEWAL}/{name}.conf", f"{LIVE}/{name}/cert.pem"
    keys = "|".join(CONF_KEYS)
    pieces = " ".join(quote(path) for path in lineage_paths(name))
    return (f"echo '== remnants'; for piece in {pieces}; do [ ! -e \"$piece\" ] || "
            "echo present; done\n"
            f"echo '== conf'; [ ! -f {quote(conf)} ] || "
            f"grep -E {quote(f'^({keys}) *=')} {quote(conf)} || true\n"
            f"echo '== cert'; if [ -f {quote(cert)} ]; then echo present; "
            f"openssl x509 -in {quote(cert)} -noout -ext subjectAltName 2>/dev/null || true; fi")


def parse_lineage(output: str) -> Lineage:
    """lineage_probe's output -> Lineage; pure."""
    conf: dict[str, str] = {}
    names: set[str] = set()
    section, present, remnants = "", False, False
    for line in output.splitlines():
        if line.startswith("== "):
            section = line[3:].strip()
        elif section == "remnants":
            remnants = remnants or line.strip() == "present"
        elif section == "conf" and "=" in line:
            key, value = line.split("=", 1)
            conf[key.strip()] = value.strip()
        elif section == "cert" and line.strip() == "present":
            present = True
        elif section == "cert":
            names.update(part.strip().removeprefix("DNS:") for part in line.split(",")
                         if part.strip().startswith("DNS:"))
    return Lineage(conf, frozenset(names), present, remnants)


def lineage_paths(name: str) -> tuple[str, str, str]:
    """Where certbot keeps a lineage: the live links, the archive, the renewal conf."""
    return f"{LIVE}/{name}", f"{ARCHIVE}/{name}", f"{RENEWAL}/{name}.conf"


def reissue_reasons(wanted: Wanted, lineage: Lineage) -> list[str]:
    """Why the lineage must be issued again (empty: it is what the site needs); pure."""
    if lineage.damaged:
        return ["lineage incomplete (a certificate, its archive or its renewal conf is "
                "missing or empty): its remains are removed and it is issued again"]
    if not lineage.has_certificate or not lineage.conf:
        return ["no certificate yet"]
    reasons = []
    added = sorted(set(wanted.domains) - lineage.names)
    removed = sorted(lineage.names - set(wanted.domains))
    if added:
        reasons.append(f"names added: {', '.join(added)}")
    if removed:
        reasons.append(f"names removed: {', '.join(removed)}")
    if lineage.conf.get("server") != wanted.server:
        reasons.append(f"ACME server {lineage.conf.get('server', 'unknown')} -> {wanted.server}")
    if lineage.conf.get("renew_hook") != wanted.deploy_hook:
        reasons.append("deploy hook not set")
    if lineage.conf.get("key_type", wanted.key_type) != wanted.key_type:
        reasons.append(f"key type {lineage.conf.get('key_type')} -> {wanted.key_type}")
    return reasons


def needs_force(wanted: Wanted, lineage: Lineage) -> bool:
    """Same names but another server, hook or key type: certbot keeps a lineage that is not
    due unless forced (new names reissue by themselves)."""
    return lineage.has_certificate and bool(lineage.conf) and \
        set(wanted.domains) == lineage.names


def certbot_command(wanted: Wanted, *, force: bool = False) -> str:
    """The ``certbot certonly`` call for one site: webroot, non-interactive, the deploy hook on
    the command line (hook files do not run on a first issuance); pure."""
    argv = ["certbot", "certonly", "--non-interactive", "--webroot", "-w", wanted.webroot,
            "--cert-name", wanted.name]
    for domain in wanted.domains:
        argv += ["-d", domain]
    argv += ["--server", wanted.server, "--agree-tos", f"--email={wanted.email}",
             "--no-eff-email",
             "--key-type", wanted.key_type, "--deploy-hook", wanted.deploy_hook, "--expand"]
    if force:
        argv.append("--force-renewal")
    command = join(*argv)
    if wanted.ca_bundle:
        command = f"REQUESTS_CA_BUNDLE={quote(wanted.ca_bundle)} {command}"
    return command


def issuance_action(wanted: Wanted, *, force: bool, clear: bool = False) -> str:
    """certbot's call; on failure its own words go to stderr (the CA's problems: Domain, Type,
    Detail), without its boilerplate, and the error lines this call added to its log when it
    printed no CA detail (a traceback's tail would crowd out what matters; the log holds
    earlier runs too). With ``clear``, an incomplete lineage's remains go first, so certbot
    issues under the site's own name instead of NAME-0001 beside them. A call that exits 0
    without the site's live certificate (certbot chose another name) fails the step."""
    noise = " ".join(f"-e {quote(pattern)}" for pattern in NOISE)
    chain = f"{LIVE}/{wanted.name}/fullchain.pem"
    remove = f"{join('rm', '-rf', *lineage_paths(wanted.name))} && " if clear else ""
    unnamed = (f"certbot exited 0 but {chain} is not there: it issued under another name "
               "(see `certbot certificates`)")
    return (f"{remove}logged=$(stat -c %s {LOG} 2>/dev/null || echo 0); "
            f"out=$({certbot_command(wanted, force=force)} 2>&1) || {{ rc=$?; "
            f"printf '%s\\n' \"$out\" | grep -v {noise} | tail -n {OUTPUT_LINES} >&2; "
            f"[ \"$(stat -c %s {LOG} 2>/dev/null || echo 0)\" -ge \"$logged\" ] || logged=0; "
            f"case $out in *Detail:*) ;; *) tail -c +$((logged + 1)) {LOG} 2>/dev/null | "
            f"grep -E {quote(LOG_ERRORS)} | tail -n {LOG_LINES} >&2;; esac; exit $rc; }}; "
            f"[ -s {quote(chain)} ] || {{ echo {quote(unnamed)} >&2; exit 1; }}")


def plan_issuance(wanted: Wanted, lineage: Lineage) -> Plan:
    """Issue, reissue or leave the lineage; pure."""
    reasons = reissue_reasons(wanted, lineage)
    if not reasons:
        return Plan(f"{', '.join(sorted(lineage.names))} from {wanted.server}")
    return Plan("; ".join(reasons), action=issuance_action(
        wanted, force=needs_force(wanted, lineage), clear=lineage.damaged))


def ensure_certificate(wanted: Wanted) -> Step:
    """The step of one acme site's certificate."""
    def decide(probed: Probed) -> Plan:
        return plan_issuance(wanted, parse_lineage(probed.output))

    return Step(f"certificate {wanted.name} ({', '.join(wanted.domains)})",
                lineage_probe(wanted.name), decide)


def domains_of(server_names: Sequence[str]) -> tuple[str, ...]:
    """The names to put in the certificate, each once, in the site's order."""
    return tuple(dict.fromkeys(server_names))
