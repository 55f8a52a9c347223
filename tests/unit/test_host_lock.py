"""Two changing runs on one host from one controller: the second is refused, not interleaved."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from provisioner.errors import ProvisionerError
from provisioner.run.host_lock import host_lock
from tests.unit.fakes import make_host

HOLD = textwrap.dedent("""
    import sys
    from provisioner.run.host_lock import host_lock
    from tests.unit.fakes import make_host
    with host_lock(make_host().config):
        print("held", flush=True)
        sys.stdin.read()
""")


def test_a_second_run_on_a_host_is_refused_while_the_first_holds_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVISIONER_CACHE_DIR", str(tmp_path / "cache"))
    first = subprocess.Popen([sys.executable, "-c", HOLD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    try:
        assert first.stdout is not None and first.stdout.readline() == "held\n"
        with pytest.raises(ProvisionerError, match=rf"pid {first.pid}\) is working on web1"), \
                host_lock(make_host().config):
            pass
    finally:
        first.communicate("")
    with host_lock(make_host().config):  # free again once the first run ended
        pass
