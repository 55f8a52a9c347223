"""The deploy tests' application image: a `docker save` archive Docker can load, built the same
byte for byte every time, with a small fake file standing in for busybox (no network, no apt)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.integration.app_images import IMAGE, build_image_archive

FAKE_BUSYBOX = b"\x7fELF not really busybox\n"


@pytest.fixture
def busybox(tmp_path: Path) -> Path:
    path = tmp_path / "busybox"
    path.write_bytes(FAKE_BUSYBOX)
    return path


def members(archive: Path) -> dict[str, bytes]:
    """Each regular file of a tar by name."""
    with tarfile.open(archive) as tar:
        return {info.name: _read(tar, info) for info in tar.getmembers() if info.isfile()}


def _read(tar: tarfile.TarFile, info: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(info)
    assert handle is not None
    return handle.read()


def unpack(archive: Path) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """The archive's one manifest entry, its config and its one layer's bytes."""
    files = members(archive)
    [entry] = json.loads(files["manifest.json"])
    [layer_name] = entry["Layers"]
    return entry, json.loads(files[entry["Config"]]), files[layer_name]


def layer_infos(layer: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        return {info.name: info for info in tar.getmembers()}


def layer_file(layer: bytes, name: str) -> bytes:
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        return _read(tar, tar.getmember(name))


def test_the_archive_is_named_after_app_and_version_and_tagged_with_the_version(
        tmp_path: Path, busybox: Path) -> None:
    path = build_image_archive(tmp_path, "v2", app="shop", busybox=busybox)
    assert path == tmp_path / "shop-v2.tar"
    entry, _config, _layer = unpack(path)
    assert entry["RepoTags"] == [f"{IMAGE}:v2"]


def test_the_archive_holds_the_manifest_the_config_and_one_layer(
        tmp_path: Path, busybox: Path) -> None:
    path = build_image_archive(tmp_path, "v1", busybox=busybox)
    entry, _config, _layer = unpack(path)
    assert set(members(path)) == {"manifest.json", entry["Config"], *entry["Layers"]}


def test_the_config_names_the_layer_by_its_digest_and_itself_by_its_own(
        tmp_path: Path, busybox: Path) -> None:
    path = build_image_archive(tmp_path, "v1", busybox=busybox)
    entry, config, layer = unpack(path)
    digest = hashlib.sha256(layer).hexdigest()
    assert config["rootfs"] == {"type": "layers", "diff_ids": [f"sha256:{digest}"]}
    assert entry["Layers"] == [f"{digest}/layer.tar"]
    assert entry["Config"] == hashlib.sha256(members(path)[entry["Config"]]).hexdigest() + ".json"


def test_the_config_runs_the_start_script_as_the_app_user_on_8080(
        tmp_path: Path, busybox: Path) -> None:
    _entry, config, layer = unpack(build_image_archive(tmp_path, "v1", busybox=busybox))
    run = config["config"]
    assert (run["User"], run["ExposedPorts"], run["WorkingDir"]) == (
        "10001:10001", {"8080/tcp": {}}, "/www")
    assert run["Cmd"][:2] == ["/bin/busybox", "sh"]
    assert run["Cmd"][2].lstrip("/") in layer_infos(layer)
    assert config["os"] == "linux"


def test_the_same_inputs_give_the_same_bytes(tmp_path: Path, busybox: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    assert (build_image_archive(first, "v2", busybox=busybox).read_bytes()
            == build_image_archive(second, "v2", busybox=busybox).read_bytes())


def test_the_layer_has_fixed_times_and_owners(tmp_path: Path, busybox: Path) -> None:
    _entry, _config, layer = unpack(build_image_archive(tmp_path, "v1", busybox=busybox))
    infos = layer_infos(layer).values()
    assert {(info.mtime, info.uid, info.gid) for info in infos} == {(0, 0, 0)}
    assert list(layer_infos(layer)) == sorted(layer_infos(layer))


def test_every_path_is_readable_by_the_app_user(tmp_path: Path, busybox: Path) -> None:
    """uid 10001 owns nothing, so what it must read is world-readable (directories searchable,
    scripts and busybox executable)."""
    _entry, _config, layer = unpack(build_image_archive(tmp_path, "v1", busybox=busybox))
    for name, info in layer_infos(layer).items():
        if info.issym():
            continue
        wanted = 0o5 if info.isdir() or info.mode & 0o100 else 0o4
        assert info.mode & wanted == wanted, name
    assert layer_file(layer, "bin/busybox") == FAKE_BUSYBOX
    assert layer_infos(layer)["bin/busybox"].mode & 0o001


def test_the_web_root_answers_with_the_version(tmp_path: Path, busybox: Path) -> None:
    _entry, _config, layer = unpack(build_image_archive(tmp_path, "v2", busybox=busybox))
    assert layer_file(layer, "www/index.html") == b"v2\n"
    assert layer_file(layer, "www/health") == b"ok v2\n"
    script = layer_file(layer, "app/start.sh").decode()
    assert "httpd -f -p 8080 -h /www" in script
    assert "echo 'testapp v2 listening on 8080'" in script
    assert "trap " in script and " TERM" in script


def test_the_broken_image_lacks_only_the_health_file_and_says_so(
        tmp_path: Path, busybox: Path) -> None:
    (tmp_path / "good").mkdir()
    (tmp_path / "bad").mkdir()
    good = unpack(build_image_archive(tmp_path / "good", "v3", busybox=busybox))
    bad = unpack(build_image_archive(tmp_path / "bad", "v3", healthy=False, busybox=busybox))
    good_infos, bad_infos = layer_infos(good[2]), layer_infos(bad[2])
    assert set(good_infos) - set(bad_infos) == {"www/health"}
    assert set(bad_infos) <= set(good_infos)
    changed = {name for name, info in bad_infos.items()
               if info.isfile() and layer_file(good[2], name) != layer_file(bad[2], name)}
    assert changed == {"app/start.sh"}
    assert ("testapp v3: refusing to become healthy (broken on purpose)"
            in layer_file(bad[2], "app/start.sh").decode())
    assert good[1]["config"] == bad[1]["config"]


def test_versions_differ_in_their_image(tmp_path: Path, busybox: Path) -> None:
    one = unpack(build_image_archive(tmp_path, "v1", busybox=busybox))
    two = unpack(build_image_archive(tmp_path, "v2", busybox=busybox))
    assert one[1]["rootfs"] != two[1]["rootfs"]
    assert one[0]["Config"] != two[0]["Config"]
