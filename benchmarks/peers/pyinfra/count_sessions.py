"""Runs the pyinfra command line while counting SSH sessions per host (exec and sftp channels).

pyinfra keeps one paramiko connection per host and opens a channel for every command and file
transfer; each is at least one round trip. The counts are written as JSON to the file named by
$PROVBENCH_SESSION_COUNTS when pyinfra exits. Counting costs one dictionary update per channel.
"""

import atexit
import json
import os
import sys
from collections import Counter

import paramiko

counts: Counter = Counter()


def _counting(method):
    def wrapper(self, *args, **kwargs):
        try:
            counts[self.get_transport().getpeername()[0]] += 1
        except (AttributeError, OSError):
            counts["unknown"] += 1
        return method(self, *args, **kwargs)
    return wrapper


paramiko.Channel.exec_command = _counting(paramiko.Channel.exec_command)
paramiko.Channel.invoke_subsystem = _counting(paramiko.Channel.invoke_subsystem)


@atexit.register
def _write_counts() -> None:
    target = os.environ.get("PROVBENCH_SESSION_COUNTS")
    if target:
        with open(target, "w", encoding="utf-8") as stream:
            json.dump(dict(counts), stream)


if __name__ == "__main__":
    from pyinfra_cli.main import main

    sys.argv[0] = "pyinfra"
    sys.exit(main())
