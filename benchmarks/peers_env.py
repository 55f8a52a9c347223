"""The peers' virtual environment: pyinfra, Ansible and matplotlib, outside the repository.

It lives in /var/cache/provisioner-bench/peers-venv, beside the benchmark's package cache, so
linters and code-shape walking the project never wade through Ansible's tens of thousands of files.

The current releases from PyPI, unpinned. Recent Ansible needs a newer Python than the project's
3.11, so the newest CPython >= 3.12 found on the machine builds the venv (pyenv's versions
included); without one, the project's interpreter is used and pip picks the newest releases
that support it. The versions used are recorded with every result.
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

VENV = Path("/var/cache/provisioner-bench/peers-venv")
PACKAGES = ("pyinfra", "ansible", "matplotlib")
MARKER = VENV / "provbench-packages.txt"


def python_version(executable: str) -> tuple[int, int] | None:
    try:
        text = subprocess.run([executable, "-c", "import sys; print(*sys.version_info[:2])"],
                              capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    major, minor = text.split()
    return int(major), int(minor)


def choose_python() -> str:
    """The closest CPython >= 3.12 to the project's (3.12 before 3.13), else the project's."""
    candidates = sorted(set(glob.glob(str(Path.home() / ".pyenv/versions/3.1[2-9]*/bin/python3")))
                        | {path for name in ("python3.12", "python3.13", "python3.14")
                           if (path := shutil.which(name))})
    versioned = [(version, path) for path in candidates
                 if (version := python_version(path)) and version >= (3, 12)]
    return min(versioned)[1] if versioned else sys.executable


def ensure_peers_venv(progress: Callable[[str], None]) -> Path:
    """The venv's python, creating the venv and installing the packages when needed."""
    python = VENV / "bin" / "python"
    if python.exists() and MARKER.exists() and MARKER.read_text().split() == list(PACKAGES):
        return python
    interpreter = choose_python()
    progress(f"creating {VENV} with {interpreter} and installing {', '.join(PACKAGES)} "
             "(a minute or two)")
    subprocess.run([interpreter, "-m", "venv", "--clear", str(VENV)], check=True)
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--upgrade", *PACKAGES],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pip could not install {', '.join(PACKAGES)}:\n{done.stderr[-3000:]}")
    MARKER.write_text("\n".join(PACKAGES) + "\n")
    return python


def peer_versions(python: Path) -> dict[str, str]:
    """Installed versions of the peers and their interpreter."""
    listing = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"],
                             capture_output=True, text=True, check=False).stdout
    wanted = {"pyinfra", "ansible", "ansible-core", "paramiko", "matplotlib"}
    versions = {}
    for line in listing.splitlines():
        name, _, version = line.partition("==")
        if name.lower() in wanted:
            # paramiko also names the project's own; keep the two apart
            key = "paramiko (peers)" if name.lower() == "paramiko" else name.lower()
            versions[key] = version
    found = re.search(r"\d+\.\d+\.\d+", subprocess.run(
        [str(python), "--version"], capture_output=True, text=True, check=False).stdout)
    versions["peers python"] = found.group(0) if found else "?"
    return versions
