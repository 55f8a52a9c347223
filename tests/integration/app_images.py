"""A tiny application image for the deploy tests, built on the controller as a `docker save` tar.

The controller has no Docker engine and the tests no registry, so the image is written by hand in
the layout `docker load -i FILE` reads (manifest.json, the config JSON, one layer tar; image spec
v1.2). Its one layer is Debian's static busybox, a start script and a web root: busybox httpd
serves `/` (the version) and `/health` (``ok <version>``, or 404 for the broken image) on 8080 as
uid 10001. Every byte is a function of the inputs, so the same version always loads as the same
image ID and a test can tell a real change from a rebuild.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from provisioner.local_files import private_cache_subdirectory

IMAGE = "provisioner-testapp"
PORT = 8080
USER = "10001:10001"
#: Where the image's files come from: a fixed time keeps the archive's bytes reproducible.
EPOCH = "1970-01-01T00:00:00Z"
START_SCRIPT = "/app/start.sh"
#: Docker's names for the controller's CPUs (the busybox binary is the controller's).
DOCKER_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm",
                        "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x"}
#: Where the Debian package puts the binary (bookworm /bin, later suites /usr/bin).
PACKAGE_BINARIES = ("bin/busybox", "usr/bin/busybox")


@dataclass(frozen=True)
class Entry:
    """One path of the layer: a directory, a file (with its bytes) or a symlink."""

    path: str
    mode: int
    data: bytes | None = None
    link: str | None = None


def busybox_binary() -> Path:
    """Debian's busybox-static binary, downloaded and unpacked once into the controller's cache.

    ``apt-get download`` leaves the controller's packages alone; presence is the whole cache key,
    since any busybox-static serves the image equally well.
    """
    cached = private_cache_subdirectory("busybox-static") / "busybox"
    if not cached.exists():
        _fetch_busybox(cached)
    return cached


def _fetch_busybox(target: Path) -> None:
    """Download the package beside ``target``, unpack it and move the binary into place."""
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        work = Path(scratch)
        _apt_download(work)
        package = next(work.glob("busybox-static_*.deb"))
        unpacked = work / "root"
        subprocess.run(["dpkg-deb", "-x", str(package), str(unpacked)], check=True)
        binary = next(unpacked / name for name in PACKAGE_BINARIES
                      if (unpacked / name).is_file())
        binary.chmod(0o755)
        os.replace(binary, target)


def _apt_download(directory: Path) -> None:
    """``apt-get download busybox-static``; an ``apt-get update`` only when that fails (a fresh
    controller may have no package lists yet)."""
    command = ["apt-get", "download", "-q", "busybox-static"]
    first = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=False)
    if first.returncode == 0:
        return
    subprocess.run(["apt-get", "update", "-q"], capture_output=True, check=True)
    subprocess.run(command, cwd=directory, capture_output=True, check=True)


def build_image_archive(directory: Path, version: str, *, healthy: bool = True,
                        app: str = "testapp", busybox: Path | None = None) -> Path:
    """Write <directory>/<app>-<version>.tar (deterministic bytes for the same inputs) holding
    image IMAGE:<version> and return its path.

    ``busybox`` stands in for the real binary (the unit tests pass a small file, so they need
    neither network nor apt).
    """
    binary = (busybox or busybox_binary()).read_bytes()
    layer = layer_tar(layer_entries(version, healthy=healthy, app=app, busybox=binary))
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = canonical_json(image_config(diff_id, version, app))
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    layer_name = hashlib.sha256(layer).hexdigest() + "/layer.tar"
    manifest = canonical_json([{"Config": config_name, "RepoTags": [f"{IMAGE}:{version}"],
                                "Layers": [layer_name]}])
    path = directory / f"{app}-{version}.tar"
    path.write_bytes(archive_tar({config_name: config, layer_name: layer,
                                  "manifest.json": manifest}))
    return path


def layer_entries(version: str, *, healthy: bool, app: str, busybox: bytes) -> list[Entry]:
    """The image's files, sorted; everything root's and readable by anyone (the app needs to
    read, never to write, apart from /tmp)."""
    entries = [
        Entry("app", 0o755),
        Entry("app/start.sh", 0o755, start_script(version, healthy=healthy, app=app).encode()),
        Entry("bin", 0o755),
        Entry("bin/busybox", 0o755, busybox),
        Entry("bin/sh", 0o777, link="busybox"),
        Entry("run", 0o755),
        Entry("tmp", 0o1777),
        Entry("www", 0o755),
        Entry("www/cgi-bin", 0o755),
        Entry("www/cgi-bin/secret-seen", 0o755, SECRET_SEEN_CGI.encode()),
        Entry("www/index.html", 0o644, f"{version}\n".encode()),
    ]
    if healthy:  # without the file busybox httpd answers /health with 404
        entries.append(Entry("www/health", 0o644, f"ok {version}\n".encode()))
    return sorted(entries, key=lambda entry: entry.path)


def start_script(version: str, *, healthy: bool, app: str) -> str:
    """PID 1: start httpd, say so, and on SIGTERM/SIGINT stop it and exit at once (a PID 1
    ignores default-handled signals, so without the trap `docker stop` would wait its timeout)."""
    broken = "" if healthy else (
        f"echo '{app} {version}: refusing to become healthy (broken on purpose)'\n")
    return (
        "#!/bin/busybox sh\n"
        f"/bin/busybox httpd -f -p {PORT} -h /www &\n"
        "httpd=$!\n"
        "trap 'kill $httpd 2>/dev/null; exit 0' TERM INT\n"
        f"echo '{app} {version} listening on {PORT}'\n"
        f"{broken}"
        "wait $httpd\n"
    )


#: GET /cgi-bin/secret-seen: whether the container's user can read a secret mounted as a file
#: (`yes`/`no`, never its value).
SECRET_SEEN_CGI = (
    "#!/bin/busybox sh\n"
    "printf 'Content-Type: text/plain\\r\\n\\r\\n'\n"
    "if [ -r /run/secrets/db_password ]; then echo yes; else echo no; fi\n"
)


def image_config(diff_id: str, version: str, app: str) -> dict[str, object]:
    """The image config (image spec v1.2): how Docker runs the container and its one layer."""
    return {
        "architecture": DOCKER_ARCHITECTURES.get(platform.machine(), platform.machine()),
        "os": "linux",
        "created": EPOCH,
        "config": {
            "User": USER,
            "Cmd": ["/bin/busybox", "sh", START_SCRIPT],
            "Env": ["PATH=/bin"],
            "ExposedPorts": {f"{PORT}/tcp": {}},
            "WorkingDir": "/www",
            "Labels": {"org.opencontainers.image.version": version,
                       "org.opencontainers.image.title": app},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": EPOCH, "created_by": "tests/integration/app_images.py"}],
    }


def canonical_json(value: object) -> bytes:
    """JSON with sorted keys and no spaces, so equal content is equal bytes (and digests)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def layer_tar(entries: list[Entry]) -> bytes:
    """An uncompressed tar of the entries with fixed owners and times."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for entry in entries:
            info = _tar_info(entry.path, entry.mode)
            if entry.link is not None:
                info.type, info.linkname = tarfile.SYMTYPE, entry.link
            elif entry.data is None:
                info.type = tarfile.DIRTYPE
            else:
                info.size = len(entry.data)
            tar.addfile(info, io.BytesIO(entry.data) if entry.data is not None else None)
    return buffer.getvalue()


def archive_tar(files: dict[str, bytes]) -> bytes:
    """The outer `docker save` tar: the files by sorted name, each directory before its file."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in sorted(files):
            if "/" in name:
                folder = _tar_info(name.rsplit("/", 1)[0], 0o755)
                folder.type = tarfile.DIRTYPE
                tar.addfile(folder)
            info = _tar_info(name, 0o644)
            info.size = len(files[name])
            tar.addfile(info, io.BytesIO(files[name]))
    return buffer.getvalue()


def _tar_info(name: str, mode: int) -> tarfile.TarInfo:
    """A header owned by root with time 0 (the bytes must not depend on when or by whom)."""
    info = tarfile.TarInfo(name)
    info.mode, info.mtime, info.uid, info.gid = mode, 0, 0, 0
    info.uname = info.gname = ""
    return info
