"""Ethical AI Developer Testbed v1.2.1 (seed guide 002) from inventories/ethical-ai-testbed.yml:
the guide's one server, checked the way its "Security Configuration", "Post-Deployment
Validation" and "Update Procedures" sections check it.

- Firewall: "ports 80, 443, 22" and nothing else; the backend and the frontend are reached only
  through nginx.
- nginx: `/api/` goes to the backend (the app role's instance 8001) and `/` to the frontend
  on 3000 (a systemd unit serving the build's files); TLS 1.2 and 1.3 are accepted, TLS 1.1 and
  1.0 are refused; the guide's four security headers come with every location, the health
  path, the backend's error pages and refused requests included.
- Rate limits per client address: past `/api/evaluate`'s 10 a minute and `/api/`'s 1000 a
  minute (burst 100) the answer is 429, no sooner and, at the rate, no later; other locations,
  and other clients, are still served.
- Update: `invoke deploy` of v1.2.1 archives the backend's data (the guide's `tar -czf
  /backup/pre-update-...`) before any instance moves; health checks after it: `invoke
  deploy.status` and /health through nginx, and `invoke deploy.history` records it.
- The second provision changes nothing in one round trip, and every spec
  passes.
"""

from __future__ import annotations

import http.client
import re
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pytest

from tests.integration.conftest import Invocation
from tests.integration.guides.conftest import Guide, Release, Scenario, reaches

pytestmark = pytest.mark.integration

SITE = "testbed.example.org"
FRONTEND = "/srv/ethical-ai-frontend/build"
GUIDE = Guide(
    name="ethical-ai-testbed", prefix="ge", hosts=("testbed1",), acme_names={SITE: "testbed1"},
    releases=(Release("v1.2.0"), Release("v1.2.1")),
    secret_files={"secrets/mongo_url": "mongodb://ethicalai_user:"
                                       "mongo-guide-5b1e9d0c7a3f@mongo.example.org:27017/"
                                       "ethical_ai_testbed_prod?tls=true",
                  "secrets/redis_url": "redis://:redis-guide-0c4f8e2a@redis.example.org:6379/0"},
    # The test image listens on 8080 (the guide's uvicorn on 8001), and its busybox has no
    # gzip program for tar -z to run: the pre-update archive is a plain tar here.
    overrides={"app_container_port": 8080,
               "app_migration_command": "/bin/busybox sh -c 'tar -cf /backup/pre-update-"
                                        "$(date +%Y%m%d-%H%M%S).tar -C /app/data .'"},
)
#: The guide's "Security Headers" middleware, header by header.
GUIDE_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "x-xss-protection": "1; mode=block",
    "strict-transport-security": "max-age=31536000; includeSubDomains",
}
#: What the backend (the test image's busybox httpd) says to a POST it has no handler for and
#: to a path it does not have: its own pages, so an answer is known to come from it.
BACKEND_POST, BACKEND_MISSING = 501, "The requested URL was not found"
EVALUATION = b'{"text": "Test evaluation"}'


@pytest.fixture(scope="module")
def testbed(guides: dict[str, Scenario]) -> Scenario:
    return guides["ethical-ai-testbed"]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: str


def ask(connection: http.client.HTTPConnection, path: str, body: bytes | None = None
        ) -> Answer:
    """One request on a kept-alive connection (http.client opens a new one when nginx closed
    it): GET, or POST of a JSON body as the guide's checklist sends to /api/evaluate."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    connection.request("POST" if body is not None else "GET", path, body=body, headers=headers)
    response = connection.getresponse()
    text = response.read().decode(errors="replace")
    return Answer(response.status, {name.lower(): value for name, value in response.getheaders()},
                  text)


def get(testbed: Scenario, path: str, body: bytes | None = None) -> Answer:
    connection = testbed.https("testbed1", SITE, timeout=10)
    try:
        return ask(connection, path, body)
    finally:
        connection.close()


@dataclass
class UntilRefused:
    """Requests to one path from this machine, over ``workers`` kept-alive connections at once,
    until nginx answers one with 429, or ``cap`` were sent, or ``deadline`` seconds passed.

    Several connections, so that even on a loaded machine the requests come faster than the
    limit lets them through and the refusal is reached."""

    testbed: Scenario
    path: str
    body: bytes | None = None
    workers: int = 1
    cap: int = 2000
    deadline: float = 60
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def worker(self, stop_at: float) -> None:
        connection = self.testbed.https("testbed1", SITE, timeout=10)
        try:
            while not self.done.is_set():
                try:
                    answer = ask(connection, self.path, self.body)
                except (OSError, ssl.SSLError, http.client.HTTPException) as error:
                    self.errors.append(repr(error))
                    self.done.set()
                    return
                with self.lock:
                    self.answers.append(answer)
                    if answer.status == 429 or len(self.answers) >= self.cap \
                            or time.monotonic() > stop_at:
                        self.done.set()
        finally:
            connection.close()

    def run(self) -> float:
        """Seconds from before the first request to after the last answer."""
        started = time.monotonic()
        threads = [threading.Thread(target=self.worker, args=(started + self.deadline,),
                                    daemon=True) for _ in range(self.workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=self.deadline + 30)
        return time.monotonic() - started

    @property
    def statuses(self) -> list[int]:
        return [answer.status for answer in self.answers]

    @property
    def passed(self) -> int:
        return sum(status != 429 for status in self.statuses)

    def refused(self) -> Answer:
        return next(answer for answer in self.answers if answer.status == 429)


def at_most_let_through(per_minute: int, burst: int, seconds: float) -> int:
    """What nginx's limit_req (nodelay) lets through in ``seconds`` from an empty bucket: the
    first request, the burst, and one more each 60/per_minute seconds (nginx counts in
    milliseconds and rounds its rate down, so never more)."""
    return 1 + burst + int(seconds * per_minute / 60)


def guide_headers(answer: Answer) -> dict[str, str | None]:
    """The guide's security headers as the answer sent them (None: not sent)."""
    return {name: answer.headers.get(name) for name in GUIDE_HEADERS}


def test_the_first_provision_succeeds(testbed: Scenario) -> None:
    assert testbed.first_run is not None
    assert testbed.first_run.exit_code == 0, testbed.first_run.output[-6000:]


def test_the_first_deploy_starts_the_backend_and_health_answers_through_nginx(
        testbed: Scenario) -> None:
    deployed = testbed.invoke("deploy", "--version", "v1.2.0")

    assert deployed.exit_code == 0, deployed.output[-4000:]
    assert testbed.curl("testbed1", f"https://{SITE}/health").stdout.strip() == "ok v1.2.0"


def test_only_ssh_http_and_https_are_open_and_the_app_answers_through_nginx_only(
        testbed: Scenario) -> None:
    status = testbed.root("testbed1", "ufw status verbose")
    opened = {line.split()[0] for line in status.splitlines()
              if " ALLOW" in line or " LIMIT" in line}
    address = testbed.address("testbed1")

    assert "Default: deny (incoming)" in status, status
    assert opened == {"22/tcp", "80/tcp", "443/tcp"}, status
    # The frontend's 3000, the backend's 8001 and the port a deploy moves it to: tried at once,
    # since a port the firewall drops answers nothing until the timeout.
    ports = (22, 80, 443, 3000, 8001, 18001)
    with ThreadPoolExecutor(max_workers=len(ports)) as pool:
        reached = dict(zip(ports, pool.map(lambda port: reaches(address, port), ports),
                           strict=True))
    assert reached == {22: True, 80: True, 443: True, 3000: False, 8001: False, 18001: False}


def test_tls_1_2_and_1_3_are_accepted_and_older_versions_are_refused(
        testbed: Scenario) -> None:
    def handshake(*options: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["openssl", "s_client", "-connect", f"{testbed.address('testbed1')}:443",
             "-servername", SITE, "-CAfile", str(testbed.ca_file), *options],
            input="", capture_output=True, text=True, check=False, timeout=30)

    for version, option in (("TLSv1.2", "-tls1_2"), ("TLSv1.3", "-tls1_3")):
        accepted = handshake(option, "-verify_return_error")
        assert accepted.returncode == 0, accepted.stderr
        assert f"Protocol  : {version}" in accepted.stdout or \
            f"New, {version}," in accepted.stdout, accepted.stdout
    # The client offers only TLS 1.1, then only 1.0 (its own security level lowered so that it
    # may): the server answers with a protocol_version alert.
    for option in ("-tls1_1", "-tls1"):
        refused = handshake(option, "-cipher", "DEFAULT@SECLEVEL=0")
        assert refused.returncode != 0, refused.stdout
        assert "alert protocol version" in refused.stderr, (option, refused.stderr)


def test_api_goes_to_the_backend_and_everything_else_to_the_frontend(
        testbed: Scenario) -> None:
    # What the CI's copy of `yarn build` puts there; a file under api/ too, which nginx must
    # never take from the frontend.
    testbed.root("testbed1", f"mkdir -p {FRONTEND}/api && echo 'testbed frontend' > "
                             f"{FRONTEND}/index.html && echo frontend > {FRONTEND}/api/x.txt")

    home = get(testbed, "/")
    api = get(testbed, "/api/x.txt")
    status = testbed.invoke("deploy.status")

    assert (home.status, home.body) == (200, "testbed frontend\n"), home
    assert api.status == 404 and BACKEND_MISSING in api.body, api
    # The instance is 8001; a deploy moves it between 8001 and 18001 (the app role's
    # alternate port), so either serves.
    assert re.search(r"instance 8001: v1\.2\.0 on port 1?8001, healthy", status.output), \
        status.output
    listening = testbed.root("testbed1", "ss -Htln")
    assert "127.0.0.1:3000 " in listening, listening


def test_every_location_sends_the_guides_security_headers(testbed: Scenario) -> None:
    # The backend's and the frontend's answers, the health path, and errors from both; the
    # evaluate location's answers, and refused ones, in the rate limit tests below (any
    # request there now would count against its limit).
    answers = {path: get(testbed, path)
               for path in ("/", "/api/x.txt", "/health", "/no-such-page")}

    assert {path: answer.status for path, answer in answers.items()} == {
        "/": 200, "/api/x.txt": 404, "/health": 200, "/no-such-page": 404}
    for path, answer in answers.items():
        assert guide_headers(answer) == GUIDE_HEADERS, (path, answer.headers)


def test_past_the_evaluate_limit_a_client_gets_429_and_others_are_still_served(
        testbed: Scenario) -> None:
    evaluate = UntilRefused(testbed, "/api/evaluate", EVALUATION, cap=40)
    seconds = evaluate.run()
    home, health = get(testbed, "/"), get(testbed, "/health")
    # The same POST from another address (the host's own 127.0.0.1) still reaches the backend.
    elsewhere = testbed.root(
        "testbed1", f"curl -sk --resolve {SITE}:443:127.0.0.1 -o /dev/null -w '%{{http_code}}' "
                    f"-H 'Content-Type: application/json' -d '{{}}' https://{SITE}/api/evaluate")

    # "10/minute": ten reach the backend at once, then one more each 6 s and no sooner.
    assert evaluate.errors == []
    assert evaluate.statuses[-1] == 429, evaluate.statuses
    assert set(evaluate.statuses[:-1]) == {BACKEND_POST}, evaluate.statuses
    assert 10 <= evaluate.passed <= at_most_let_through(10, 9, seconds), \
        (evaluate.statuses, seconds)
    assert (home.status, health.status) == (200, 200)
    assert elsewhere == str(BACKEND_POST), "the limit is per client address"
    assert guide_headers(evaluate.answers[0]) == GUIDE_HEADERS, evaluate.answers[0]
    assert guide_headers(evaluate.refused()) == GUIDE_HEADERS, evaluate.refused()


def test_past_the_api_limit_a_client_gets_429(testbed: Scenario) -> None:
    api = UntilRefused(testbed, "/api/x.txt", workers=4)
    seconds = api.run()
    home = get(testbed, "/")

    # 1000 a minute with a burst of 100: 101 at once, then one each 60 ms.
    assert api.errors == []
    assert 429 in api.statuses, (len(api.statuses), seconds)
    assert set(api.statuses) == {404, 429}, set(api.statuses)
    assert 101 <= api.passed <= at_most_let_through(1000, 100, seconds), (api.passed, seconds)
    assert guide_headers(api.refused()) == GUIDE_HEADERS, api.refused()
    assert home.status == 200, home


def test_an_update_archives_the_backends_data_before_any_instance_moves(
        testbed: Scenario) -> None:
    testbed.root("testbed1", "echo '{\"request_id\": 1}' > /srv/ethical-ai/data/evaluations.json "
                             "&& chown 10001:10001 /srv/ethical-ai/data/evaluations.json")
    before = testbed.root("testbed1", "ls -1 /srv/ethical-ai/backup").split()

    updated = testbed.invoke("deploy", "--version", "v1.2.1", "--message", "update to v1.2.1")

    assert updated.exit_code == 0, updated.output[-4000:]
    new = sorted(set(testbed.root("testbed1", "ls -1 /srv/ethical-ai/backup").split())
                 - set(before))
    assert len(new) == 1 and new[0].startswith("pre-update-"), new
    content = testbed.root("testbed1", f"tar -tf /srv/ethical-ai/backup/{new[0]}")
    assert "./evaluations.json" in content.split(), content
    migration = updated.output.index("running the migration with v1.2.1")
    assert migration < updated.output.index("instance 8001", migration), updated.output


def test_health_checks_pass_after_the_update_and_the_history_records_it(
        testbed: Scenario) -> None:
    status = testbed.invoke("deploy.status")
    health = testbed.curl("testbed1", f"https://{SITE}/health")
    history = testbed.invoke("deploy.history", "--limit", "1")

    assert status.exit_code == 0, status.output
    assert re.search(r"instance 8001: v1\.2\.1 on port 1?8001, healthy", status.output), \
        status.output
    assert health.stdout.strip() == "ok v1.2.1", health
    assert history.exit_code == 0, history.output
    assert "v1.2.1" in history.output and "v1.2.0" in history.output, history.output
    assert "update to v1.2.1" in history.output, history.output


def changed_steps_and_round_trips(run: Invocation) -> tuple[list[str], int]:
    result = run.report["hosts"]["testbed1"]
    changed = [step["label"] for step in result["steps"] if step["status"] == "changed"]
    return changed, result["round_trips"]


def test_a_second_provision_changes_nothing_in_one_round_trip(testbed: Scenario) -> None:
    again = testbed.invoke("provision")

    assert again.exit_code == 0, again.output[-4000:]
    assert changed_steps_and_round_trips(again) == ([], 1)


def test_every_spec_passes(testbed: Scenario) -> None:
    verified = testbed.invoke("verify", timeout=900)
    assert verified.exit_code == 0, verified.output[-4000:]
