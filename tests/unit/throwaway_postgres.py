"""A throwaway PostgreSQL server for unit tests of SQL and SCRAM, where this machine has one.

It listens on a Unix socket in a temporary directory only (no TCP), runs as ``postgres`` when
the tests run as root (the server refuses root), trusts the ``test`` superuser and asks every
other role for its SCRAM password, so a test can prove a login as well as a query.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from provisioner.commands import join, with_stdin

HBA = "local all test trust\nlocal all all scram-sha-256\n"


def postgresql_programs() -> Path | None:
    """The directory of initdb, pg_ctl and psql, if PostgreSQL's server is installed here."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


@dataclass(frozen=True)
class Server:
    programs: Path
    socket_dir: Path

    def psql(self, user: str = "test") -> list[str]:
        """psql's argv for a session as ``user`` (the ``test`` superuser by default)."""
        return [str(self.programs / "psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h",
                str(self.socket_dir), "-U", user, "-d", "postgres"]

    def run_sql(self, sql: str, user: str = "test", password: str | None = None
                ) -> subprocess.CompletedProcess[str]:
        """psql run through /bin/sh with ``sql`` on its stdin, as a role sends it to a host."""
        env = {**os.environ, "PGCLIENTENCODING": "UTF8"}
        if password is not None:
            env["PGPASSWORD"] = password
        return subprocess.run(["/bin/sh", "-s"], input=with_stdin(join(*self.psql(user)), sql),
                              capture_output=True, text=True, timeout=60, check=False, env=env)

    def rows(self, sql: str) -> list[str]:
        done = self.run_sql(sql)
        assert done.returncode == 0, done.stderr
        return done.stdout.splitlines()


@contextmanager
def throwaway_server() -> Iterator[Server]:
    """A started server, stopped and removed afterwards; skips the test without PostgreSQL."""
    programs = postgresql_programs()
    if programs is None:
        pytest.skip("PostgreSQL is not installed on this machine")
    server_user: list[str] = []
    data = Path(tempfile.mkdtemp(prefix="provisioner-sql-"))
    if os.getuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(data, owner.pw_uid, owner.pw_gid)
        server_user = ["runuser", "-u", "postgres", "--"]
    try:
        subprocess.run([*server_user, str(programs / "initdb"), "-D", str(data / "db"), "-A",
                        "trust", "-U", "test", "-E", "UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        (data / "db" / "pg_hba.conf").write_text(HBA)
        subprocess.run([*server_user, str(programs / "pg_ctl"), "-D", str(data / "db"), "-w",
                        "-l", str(data / "log"), "-o",
                        f"-k {data} -c listen_addresses= -c fsync=off", "start"],
                       check=True, capture_output=True, timeout=120)
        yield Server(programs, data)
    finally:
        subprocess.run([*server_user, str(programs / "pg_ctl"), "-D", str(data / "db"),
                        "-m", "immediate", "stop"], capture_output=True, timeout=60, check=False)
        shutil.rmtree(data, ignore_errors=True)
