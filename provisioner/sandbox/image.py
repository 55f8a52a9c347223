"""Builds and caches one base image per Debian suite and variant, which its machines share.

Building takes about a minute, so the image is kept under /var/cache and rebuilt only when the
recipe (or the host's mirror) changes. A build happens in a temporary directory that is renamed
into place at the end: an interrupted build never leaves something that looks like an image.
"""

import fcntl
import glob
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from provisioner.sandbox import image_recipe
from provisioner.sandbox.errors import SandboxError
from provisioner.sandbox.mirror import (
    find_host_mirror,
    render_debian_sources,
    render_security_sources,
)
from provisioner.sandbox.mounts import remove_tree
from provisioner.sandbox.paths import CACHE_DIR
from provisioner.sandbox.process import run

SUPPORTED_SUITES = ("bookworm", "trixie")
SUPPORTED_VARIANTS = tuple(image_recipe.VARIANT_PACKAGES)
BUILD_SECONDS_HINT = 70


def check_suite(suite: str) -> None:
    """Only suites the roles support can be sandboxed; say which those are."""
    if suite not in SUPPORTED_SUITES:
        raise SandboxError(
            f"Unsupported suite {suite!r}: the sandbox builds Debian "
            f"{' or '.join(SUPPORTED_SUITES)} machines. Pass one of those."
        )


def check_variant(variant: str) -> None:
    """Only the variants the recipe describes can be built; say which those are."""
    if variant not in SUPPORTED_VARIANTS:
        raise SandboxError(
            f"Unknown image variant {variant!r}: the sandbox builds "
            f"{' or '.join(SUPPORTED_VARIANTS)} images. Pass one of those."
        )


def image_name(suite: str, variant: str) -> str:
    """The image's directory in the cache, `suite` or `suite-variant`.

    The standard variant keeps the bare suite name it had before variants existed, so its
    cached image stays valid.
    """
    return suite if variant == image_recipe.DEFAULT_VARIANT else f"{suite}-{variant}"


def image_root(name: str) -> Path:
    """The cached root filesystem machines of the image are made from (read-only to them)."""
    return CACHE_DIR / name / "rootfs"


def cached_stamp(name: str) -> str | None:
    """The recipe stamp of the cached image, or None when there is no complete image."""
    stamp = CACHE_DIR / name / "stamp"
    return stamp.read_text(encoding="utf-8").strip() if stamp.exists() else None


@contextmanager
def build_lock(name: str) -> Iterator[None]:
    """Serialise builds of one image between processes (two `up`s must not both debootstrap)."""
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / f".{name}.lock", "w", encoding="utf-8") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield


def ensure_image(
    suite: str, variant: str, in_use: bool, progress: Callable[[str], None]
) -> Path:
    """The current base image for suite and variant, built first if missing or outdated.

    in_use says running machines sit on the cached image; replacing it under them would break
    their overlays, so a stale image in use is an error rather than a silent rebuild.
    """
    check_suite(suite)
    check_variant(variant)
    mirror = find_host_mirror()
    stamp = image_recipe.recipe_stamp(mirror, suite, variant)
    name = image_name(suite, variant)
    with build_lock(name):
        current = cached_stamp(name)
        if current == stamp:
            return image_root(name)
        if current is not None and in_use:
            raise SandboxError(
                f"The {name} base image was built by an older sandbox recipe and machines still "
                "use it. Run `sandbox.down` first; the next `up` rebuilds the image."
            )
        progress(f"building {name} base image (about {BUILD_SECONDS_HINT} s, cached afterwards)")
        packages = image_recipe.variant_packages(variant, mirror)
        build_image(suite, name, packages, mirror, stamp,
                    patched=variant in image_recipe.PATCHED_VARIANTS, progress=progress)
    return image_root(name)


def build_image(
    suite: str, name: str, packages: tuple[str, ...], mirror: str, stamp: str,
    patched: bool = True, progress: Callable[[str], None] = lambda _line: None,
) -> None:
    """debootstrap and customise into a temporary directory, then rename it into the cache."""
    remove_leftovers(name)
    build_dir = Path(tempfile.mkdtemp(dir=CACHE_DIR, prefix=f".{name}.build-"))
    try:
        root = build_dir / "rootfs"
        bootstrap(suite, packages, mirror, root)
        problem = apply_security_updates(root, mirror, suite) if patched else ""
        if problem:
            progress(f"{name}: built without the security updates, which each machine's first "
                     f"provision then installs ({problem})")
        customise(root, mirror, suite)
        (build_dir / "stamp").write_text(stamp + "\n", encoding="utf-8")
        os.chmod(build_dir, 0o755)
        swap_into_cache(build_dir, CACHE_DIR / name)
    finally:
        remove_tree(build_dir)


def remove_leftovers(name: str) -> None:
    """Delete what an interrupted build or swap left behind (only ever under the build lock)."""
    for pattern in (f".{name}.build-*", f".{name}.old-*"):
        for leftover in CACHE_DIR.glob(pattern):
            remove_tree(leftover)


def bootstrap(suite: str, packages: tuple[str, ...], mirror: str, root: Path) -> None:
    """A minbase Debian with the variant's packages, from the host's own mirror."""
    include = ",".join(packages)
    try:
        run(["debootstrap", "--variant=minbase", f"--include={include}", suite, str(root), mirror])
    except SandboxError as error:
        raise SandboxError(
            f"Building the {suite} base image from {mirror} failed. Check that the host reaches "
            f"that mirror (`apt-get update` on the host) and try again. {error}"
        ) from error


#: A patched image's security archive, as cloud images name one.
SECURITY_SOURCES = "etc/apt/sources.list.d/debian-security.list"


def apply_security_updates(root: Path, mirror: str, suite: str) -> str:
    """The suite's security archive named in the image and its updates installed.

    Cloud images are built from a patched archive and name the security archive; an image
    without the updates would make every machine's first provision download and install them
    (the hardening role installs what a fresh host lacks: a minute or two each, on a shared
    machine), and one with them but without the archive could not install a package that
    depends on an updated one (perl on perl-base). The archive is the mirror's path plus
    ``-security``, as the hardening role derives it; a mirror without one leaves the image as
    debootstrap made it: the problem is returned (empty when patched)."""
    source = root / SECURITY_SOURCES
    source.write_text(render_security_sources(mirror, suite), encoding="utf-8")
    script = ("apt-get -q update && DEBIAN_FRONTEND=noninteractive apt-get -q -y "
              "-o Dpkg::Options::=--force-confold upgrade && apt-get clean")
    try:
        # No machined and no system bus here (machines.py): the container stays in our own
        # cgroup, and takes the host's resolver to reach the mirror.
        run(["systemd-nspawn", "--quiet", "--register=no", "--keep-unit", "--link-journal=no",
             "--resolv-conf=copy-host", f"--directory={root}", "sh", "-c", script])
    except SandboxError as error:
        source.unlink(missing_ok=True)
        return str(error).strip().splitlines()[-1] if str(error).strip() else "failed"
    return ""


def swap_into_cache(build_dir: Path, destination: Path) -> None:
    """Move the finished image into place, replacing an outdated one only once the new is whole."""
    if destination.exists():
        old = Path(tempfile.mkdtemp(dir=CACHE_DIR, prefix=f".{destination.name}.old-"))
        os.rename(destination, old / "image")
        os.rename(build_dir, destination)
        remove_tree(old)
    else:
        os.rename(build_dir, destination)


def customise(root: Path, mirror: str, suite: str) -> None:
    """Turn a bare debootstrap tree into a fresh-cloud-VM image (see image_recipe for why)."""
    for pattern in image_recipe.REMOVED_GLOBS:
        for path in glob.glob(str(root / pattern)):
            os.unlink(path)
    files = {
        **image_recipe.IMAGE_FILES,
        "etc/apt/sources.list.d/debian.sources": (render_debian_sources(mirror, suite), 0o644),
    }
    for relative, (text, mode) in files.items():
        file_path = root / relative
        file_path.parent.mkdir(parents=True, exist_ok=True)
        file_path.write_text(text, encoding="utf-8")
        os.chmod(file_path, mode)
    for relative, target in image_recipe.IMAGE_SYMLINKS.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, root / relative)
    create_admin_user(root)


def create_admin_user(root: Path) -> None:
    """The cloud image's default user (in group sudo) plus passwords for it and root."""
    admin = image_recipe.ADMIN_USER
    run(["chroot", str(root), "useradd", "--create-home", "--shell", "/bin/bash",
         "--groups", "sudo", admin])
    passwords = f"root:{image_recipe.ROOT_PASSWORD}\n{admin}:{image_recipe.ADMIN_PASSWORD}\n"
    run(["chroot", str(root), "chpasswd"], input_text=passwords)
