"""A fresh install of the project for the timed runs: what a user has after cloning and
``pip install -e .``, before the first run.

The runner times provisioner through ``python -m invoke provision`` in a copy of the checkout
made for the run and installed editable into a virtualenv of its own, whose interpreter sees
this machine's packages (the dependencies, with the bytecode pip compiled for them, as in a
user's environment). Nothing compiles the copy's modules beforehand: the first run writes their
bytecode as a user's first run does (tasks.py turns invoke's no-bytecode default off for the
project's modules) and the runs after it read it. ``forget_bytecode`` takes the copy back to its
state right after the install, for timing a first run again.
"""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

#: Directories of a checkout that an install does not have (caches, the runner's own work).
NOT_INSTALLED = ("__pycache__", ".git", ".work", "*.egg-info", ".mypy_cache", ".pytest_cache",
                 ".ruff_cache")


@dataclass(frozen=True)
class Install:
    root: Path      # the copy of the checkout: invoke runs here and finds its tasks.py
    python: Path    # the virtualenv's interpreter, the project installed editable in it

    @property
    def roles_dir(self) -> Path:
        """The benchmark's roles in the copy, so their bytecode is the install's too."""
        return self.root / "benchmarks" / "roles"


def fresh_install(project: Path, target: Path) -> Install:
    """Copy the checkout to target/project (its files as they are now, tracked or new, none
    that git ignores), make target/venv and ``pip install -e`` the copy into it."""
    shutil.rmtree(target, ignore_errors=True)
    root, venv = target / "project", target / "venv"
    copy_checkout(project, root)
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True)
    python = venv / "bin" / "python"
    if sys.prefix != sys.base_prefix:
        # Run from a virtualenv: --system-site-packages shows the base interpreter's packages,
        # not this venv's, where the dependencies are. A path file adds them (without running
        # their own path files, so an editable install of this checkout does not come along).
        packages = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / \
            "site-packages"
        (packages / "runner-environment.pth").write_text(
            "".join(f"{path}\n" for path in site.getsitepackages()), encoding="utf-8")
    # The machine's own pip (visible through the system site-packages) installing into the
    # venv; --no-deps and --no-build-isolation because the dependencies and setuptools are
    # installed already, so nothing is downloaded.
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--no-deps",
                    "--editable", str(root)],
                   check=True, stdout=subprocess.DEVNULL)
    return Install(root, python)


def copy_checkout(project: Path, root: Path) -> None:
    listed = subprocess.run(["git", "-C", str(project), "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], capture_output=True, check=False)
    if listed.returncode != 0:  # not a git checkout (an unpacked archive): everything but caches
        shutil.copytree(project, root, ignore=shutil.ignore_patterns(*NOT_INSTALLED))
        return
    for name in listed.stdout.decode().split("\0"):
        source = project / name
        if not name or not source.is_file():  # deleted in the work tree, or a submodule
            continue
        destination = root / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)


def forget_bytecode(root: Path) -> None:
    """Remove the bytecode the runs wrote into the copy: the install as it was made."""
    for cache in sorted(root.rglob("__pycache__")):
        shutil.rmtree(cache, ignore_errors=True)
