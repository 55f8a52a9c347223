"""Every sandbox machine starts in cgroups of its own, in each hierarchy its systemd tracks.

Machines once shared one `payload` cgroup: one machine's systemd removing a unit's cgroup made
another's same-named unit fail to start (a degraded boot, sometimes /run/nologin left behind).
"""

import os
import subprocess
from pathlib import Path

from provisioner.sandbox import cgroups
from provisioner.sandbox.machines import launch_argv, nspawn_argv

HYBRID_MOUNTS = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
UNIFIED_MOUNTS = "29 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"


def test_on_a_hybrid_host_the_systemd_and_v2_hierarchies_are_split_but_not_controllers() -> None:
    own = "9:name=systemd:/\n5:memory:/\n0::/\n"
    assert cgroups.tracking_hierarchies(HYBRID_MOUNTS, own) == [
        Path("/sys/fs/cgroup/systemd"), Path("/sys/fs/cgroup/unified"),
    ]


def test_on_a_unified_host_machines_nest_below_the_callers_own_cgroup() -> None:
    own = "0::/system.slice/ci-runner.service\n"
    assert cgroups.tracking_hierarchies(UNIFIED_MOUNTS, own) == [
        Path("/sys/fs/cgroup/system.slice/ci-runner.service"),
    ]


def test_a_hierarchy_mounted_from_a_subtree_is_followed_relative_to_its_mount_root() -> None:
    mounts = "41 31 0:38 /outer /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"
    assert cgroups.tracking_hierarchies(mounts, "0::/outer/inner\n") == [
        Path("/sys/fs/cgroup/inner"),
    ]


def test_each_machine_gets_its_own_directory_under_the_sandbox_group() -> None:
    directories = cgroups.machine_cgroups("sbtest1")
    assert directories
    assert all(path.parent.name == cgroups.SANDBOX_GROUP for path in directories)
    assert all(path.name == "sbtest1" for path in directories)
    assert cgroups.machine_cgroups("sbtest2") != directories


def test_nspawn_is_started_from_inside_every_given_cgroup(tmp_path: Path) -> None:
    procs = [tmp_path / "one", tmp_path / "two"]
    argv = launch_argv("sb1", tmp_path, procs)
    assert argv[argv.index("--") + 1:] == nspawn_argv("sb1", tmp_path)
    stand_in = [*argv[:argv.index("--") + 1], "sh", "-c", "echo started $$"]
    shown = subprocess.run(stand_in, capture_output=True, text=True, check=True).stdout.split()
    assert shown[0] == "started"
    assert [path.read_text().strip() for path in procs] == [shown[1], shown[1]]


def test_nspawn_does_not_start_when_a_cgroup_cannot_be_joined(tmp_path: Path) -> None:
    argv = launch_argv("sb1", tmp_path, [tmp_path / "missing" / "cgroup.procs"])
    stand_in = [*argv[:argv.index("--") + 1], "sh", "-c", "echo started"]
    result = subprocess.run(stand_in, capture_output=True, text=True, check=False)
    assert result.returncode == 125
    assert "started" not in result.stdout


def test_removing_a_machines_cgroups_removes_nested_groups_deepest_first(tmp_path: Path) -> None:
    machine = tmp_path / cgroups.SANDBOX_GROUP / "sb1"
    (machine / "payload" / "system.slice" / "ssh.service").mkdir(parents=True)
    (machine / "supervisor").mkdir()
    cgroups.remove([machine, tmp_path / "never-made"])
    assert not machine.exists()
    assert (tmp_path / cgroups.SANDBOX_GROUP).exists()


def test_a_cgroup_still_in_use_is_left_after_the_timeout(tmp_path: Path) -> None:
    busy = tmp_path / "sb1"
    busy.mkdir()
    (busy / "cgroup.procs").write_text(f"{os.getpid()}\n")
    cgroups.remove([busy], timeout=0.1)
    assert busy.exists()
