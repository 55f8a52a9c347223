"""``python -m invoke ARGS`` with each host's SSH round trips counted: the deploy scenario's
provisioner (``invoke deploy`` reports no round trips of its own).

Usage (from the project root, like ``python -m invoke``):
    PROVBENCH_ROUND_TRIPS=OUT.json python -m benchmarks.count_round_trips deploy --version v2 ...

Every round trip of provisioner goes through a connection made by
``provisioner.transport.kept_logins.open_connection`` (a kept login's KeptConnection, or a new
login's Connection), one ``run_script`` call each; this wraps that function before the tasks
import it, so each connection's ``run_script`` adds one to its host's count, and writes
``{host: count}`` to OUT.json when the process exits. It imports nothing a deploy does not
import anyway (no SSH library: a kept login's client has none), only earlier.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
from collections import Counter
from typing import Any


def install(counts: Counter[str]) -> None:
    from provisioner.transport import kept_logins

    opened = kept_logins.open_connection

    def open_counting(config: Any) -> Any:
        connection = opened(config)
        run_script = connection.run_script

        def counted(*arguments: Any, **keywords: Any) -> Any:
            counts[config.name] += 1
            return run_script(*arguments, **keywords)

        connection.run_script = counted
        return connection

    kept_logins.open_connection = open_counting  # type: ignore[assignment]


def main() -> None:
    counts: Counter[str] = Counter()
    out = os.environ["PROVBENCH_ROUND_TRIPS"]

    @atexit.register
    def write() -> None:
        with open(out, "w", encoding="utf-8") as stream:
            json.dump(dict(counts), stream)

    if "provisioner.run.session" in sys.modules:
        raise SystemExit("count_round_trips: provisioner.run.session was imported too early")
    install(counts)
    from invoke.main import program

    sys.argv = ["invoke", *sys.argv[1:]]
    program.run()


if __name__ == "__main__":
    main()
