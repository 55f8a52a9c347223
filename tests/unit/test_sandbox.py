"""Pure logic of the sandbox: mirror discovery, addresses, inventory, state, known_hosts.

Nothing here needs root or the network; booting machines is covered by the integration tests.
"""

from pathlib import Path

import pytest
import yaml

from provisioner.sandbox import Machine, SandboxError, ssh_argv
from provisioner.sandbox.image import image_name
from provisioner.sandbox.image_recipe import recipe_stamp, variant_packages
from provisioner.sandbox.inventory import render_inventory, write_inventory
from provisioner.sandbox.lifecycle import (
    check_request,
    machine_names,
    name_order,
    plan_addresses,
)
from provisioner.sandbox.mirror import (
    find_host_mirror,
    mirror_from_deb822,
    mirror_from_one_line,
    render_debian_sources,
    render_security_sources,
)
from provisioner.sandbox.mounts import mount_points_below
from provisioner.sandbox.network import choose_address, host_interface, mac_address
from provisioner.sandbox.process import run, succeeds
from provisioner.sandbox.ssh import host_key_lines, replace_host_entries
from provisioner.sandbox.state import SandboxState, dump_state, load_state, parse_state, save_state

MIRROR = "http://mirror.example.org/debian"
SECURITY = "http://security.example.org/debian-security"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKey provisioner-sandbox"

DEB822_WITH_SECURITY_FIRST = f"""\
Types: deb
URIs: {SECURITY}
Suites: bookworm-security
Components: main

Types: deb
# a comment inside the stanza
URIs: {MIRROR}/
Suites: bookworm bookworm-updates
Components: main
"""


def machine(name: str, address: str) -> Machine:
    return Machine(name, address, "bookworm", 4242, Path(f"/var/lib/x/{name}/root"))


def write_apt_dir(tmp_path: Path, sources: dict[str, str], sources_list: str | None) -> Path:
    (tmp_path / "apt" / "sources.list.d").mkdir(parents=True)
    for name, text in sources.items():
        (tmp_path / "apt" / "sources.list.d" / name).write_text(text)
    if sources_list is not None:
        (tmp_path / "apt" / "sources.list").write_text(sources_list)
    (tmp_path / "os-release").write_text('PRETTY_NAME="Debian"\nVERSION_CODENAME=bookworm\n')
    return tmp_path


def test_deb822_mirror_is_the_entry_serving_the_host_suite() -> None:
    assert mirror_from_deb822(DEB822_WITH_SECURITY_FIRST, "bookworm") == MIRROR


def test_security_sources_are_not_taken_as_the_mirror() -> None:
    only_security = f"Types: deb\nURIs: {SECURITY}\nSuites: bookworm-security\n"
    assert mirror_from_deb822(only_security, "bookworm") is None


def test_security_archive_listing_the_main_suite_is_still_not_the_mirror() -> None:
    odd = f"Types: deb\nURIs: {SECURITY}\nSuites: bookworm bookworm-security\n"
    assert mirror_from_deb822(odd, "bookworm") is None


def test_disabled_deb822_stanzas_are_ignored() -> None:
    disabled = f"Types: deb\nURIs: {MIRROR}\nSuites: bookworm\nEnabled: no\n"
    assert mirror_from_deb822(disabled, "bookworm") is None


def test_source_only_deb822_stanzas_are_ignored() -> None:
    sources_only = f"Types: deb-src\nURIs: {MIRROR}\nSuites: bookworm\n"
    assert mirror_from_deb822(sources_only, "bookworm") is None


def test_deb822_entries_for_other_suites_are_ignored() -> None:
    other = f"Types: deb\nURIs: {MIRROR}\nSuites: nodistro\n"
    assert mirror_from_deb822(other, "bookworm") is None


def test_one_line_mirror_skips_security_and_source_lines() -> None:
    text = (
        f"deb {SECURITY} bookworm-security main\n"
        f"deb-src {MIRROR} bookworm main\n"
        f"deb {MIRROR} bookworm main contrib\n"
    )
    assert mirror_from_one_line(text, "bookworm") == MIRROR


def test_one_line_mirror_allows_bracketed_options() -> None:
    text = f"deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] {MIRROR}/ bookworm main\n"
    assert mirror_from_one_line(text, "bookworm") == MIRROR


def test_commented_one_line_entries_are_ignored() -> None:
    assert mirror_from_one_line(f"# deb {MIRROR} bookworm main\n", "bookworm") is None


def test_host_mirror_falls_back_to_the_one_line_sources_list(tmp_path: Path) -> None:
    other = "Types: deb\nURIs: https://vendor.example.org/apt\nSuites: nodistro\n"
    base = write_apt_dir(tmp_path, {"vendor.sources": other}, f"deb {MIRROR} bookworm main\n")
    assert find_host_mirror(base / "apt", base / "os-release") == MIRROR


def test_host_mirror_prefers_deb822_sources(tmp_path: Path) -> None:
    base = write_apt_dir(
        tmp_path, {"debian.sources": DEB822_WITH_SECURITY_FIRST},
        "deb http://other.example.org/debian bookworm main\n",
    )
    assert find_host_mirror(base / "apt", base / "os-release") == MIRROR


def test_missing_host_mirror_is_a_sandbox_error(tmp_path: Path) -> None:
    base = write_apt_dir(tmp_path, {}, None)
    with pytest.raises(SandboxError, match="No Debian mirror"):
        find_host_mirror(base / "apt", base / "os-release")


def test_machine_sources_name_main_and_updates_but_not_security() -> None:
    text = render_debian_sources(MIRROR, "trixie")
    assert f"URIs: {MIRROR}\n" in text
    assert "Suites: trixie trixie-updates\n" in text
    assert "Components: main\n" in text
    assert "security" not in text


def test_image_stamp_changes_with_the_mirror() -> None:
    assert recipe_stamp(MIRROR, "bookworm") != recipe_stamp("http://b.example.org/d", "bookworm")


def test_image_stamp_changes_with_the_variant() -> None:
    assert recipe_stamp(MIRROR, "bookworm", "minimal") != recipe_stamp(MIRROR, "bookworm")


def test_the_standard_image_keeps_its_cache_directory_and_others_get_their_own() -> None:
    assert image_name("bookworm", "standard") == "bookworm"
    assert image_name("trixie", "minimal") == "trixie-minimal"


def test_the_minimal_variant_has_ssh_and_sudo_but_no_kmod_or_extras() -> None:
    packages = set(variant_packages("minimal", MIRROR))
    assert {"systemd-sysv", "openssh-server", "sudo"} <= packages
    assert not packages & {"kmod", "iproute2", "python3", "procps", "ca-certificates"}
    assert "kmod" in variant_packages("standard", MIRROR)


def test_an_https_mirror_brings_ca_certificates_into_the_minimal_variant() -> None:
    assert "ca-certificates" in variant_packages("minimal", "https://mirror.example.org/debian")


def test_machine_number_picks_the_matching_address() -> None:
    assert choose_address(3, []) == "10.77.0.13"


def test_taken_preferred_address_falls_back_to_the_lowest_free_one() -> None:
    assert choose_address(1, ["10.77.0.11", "10.77.0.12"]) == "10.77.0.13"


def test_full_subnet_is_a_sandbox_error() -> None:
    everything = [f"10.77.0.{host}" for host in range(11, 255)]
    with pytest.raises(SandboxError, match="in use"):
        choose_address(1, everything)


def test_new_machines_never_reuse_an_address_in_use() -> None:
    used = ["10.77.0.11", "10.77.0.12"]
    addresses = [address for _, address in plan_addresses(["sbtest1", "sbtest2"], used)]
    assert not set(addresses) & set(used)
    assert len(set(addresses)) == 2


def test_a_reused_address_gets_the_same_mac_so_stale_arp_entries_stay_right() -> None:
    assert mac_address("10.77.0.11") == "02:00:0a:4d:00:0b"
    assert mac_address("10.77.0.11") != mac_address("10.77.0.12")


def test_machine_names_count_from_one() -> None:
    assert machine_names("sandbox", 3) == ["sandbox1", "sandbox2", "sandbox3"]


def test_host_interface_names_fit_the_kernel_limit() -> None:
    assert host_interface("sandbox12") == "vt-sandbox12"


def test_overlong_machine_names_are_rejected() -> None:
    with pytest.raises(SandboxError, match="too long"):
        host_interface("averyverylongname1")


@pytest.mark.parametrize("prefix", ["Sandbox", "1box", "sand_box", "", "elevenchars"])
def test_unusable_prefixes_are_rejected_before_any_work(prefix: str) -> None:
    with pytest.raises(SandboxError, match="prefix"):
        check_request(1, "bookworm", prefix)


def test_unsupported_suite_is_rejected_with_the_supported_ones_named() -> None:
    with pytest.raises(SandboxError, match="bookworm or trixie"):
        check_request(1, "buster", "sandbox")


def test_unknown_variant_is_rejected_with_the_known_ones_named() -> None:
    with pytest.raises(SandboxError, match="standard or minimal"):
        check_request(1, "bookworm", "sandbox", variant="tiny")


EXPECTED_INVENTORY = (
    "# Written by `invoke sandbox.up`: local throwaway sandbox machines. "
    "Regenerated on every up; do not edit.\n"
) + f"""\
defaults:
  user: admin
  port: 22
  ssh:
    identity_file: /var/lib/provisioner-sandbox/id_ed25519
    known_hosts: /var/lib/provisioner-sandbox/known_hosts
  vars:
    hardening_admin_user: admin
    hardening_admin_authorized_keys:
      - "{PUBLIC_KEY}"
groups:
  base:
    roles: [hardening, ufw, fail2ban]
hosts:
  sandbox1:
    address: 10.77.0.11
    groups: [base]
  sandbox2:
    address: 10.77.0.12
    groups: [base]
"""


def test_inventory_text_is_exactly_the_project_format() -> None:
    machines = [machine("sandbox1", "10.77.0.11"), machine("sandbox2", "10.77.0.12")]
    assert render_inventory(machines, PUBLIC_KEY) == EXPECTED_INVENTORY


def test_inventory_parses_back_to_the_machines_and_key(tmp_path: Path) -> None:
    path = tmp_path / "sandbox.yml"
    write_inventory([machine("sbtest1", "10.77.0.21")], path, public_key=PUBLIC_KEY)
    data = yaml.safe_load(path.read_text())
    assert data["hosts"] == {"sbtest1": {"address": "10.77.0.21", "groups": ["base"]}}
    assert data["defaults"]["vars"]["hardening_admin_authorized_keys"] == [PUBLIC_KEY]
    assert data["groups"] == {"base": {"roles": ["hardening", "ufw", "fail2ban"]}}


def test_inventory_without_machines_still_parses_to_a_hosts_mapping() -> None:
    assert yaml.safe_load(render_inventory([], PUBLIC_KEY))["hosts"] == {}


def test_state_survives_a_round_trip() -> None:
    minimal = Machine("sbmin1", "10.77.0.12", "bookworm", 4343, Path("/r"), variant="minimal")
    state = SandboxState([machine("sandbox1", "10.77.0.11"), minimal], restore_ip_forward="0")
    assert parse_state(dump_state(state)) == state


def test_a_state_recorded_before_variants_existed_reads_as_standard_machines() -> None:
    old = ('{"version": 1, "restore_ip_forward": null, "machines": [{"name": "it1", '
           '"address": "10.77.0.11", "suite": "bookworm", "pid": 7, "root": "/r"}]}')
    assert parse_state(old).machines[0].variant == "standard"


def test_saving_an_empty_state_removes_the_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    save_state(SandboxState([machine("sandbox1", "10.77.0.11")]), path)
    save_state(SandboxState(), path)
    assert not path.exists()
    assert load_state(path) == SandboxState()


def test_known_hosts_lines_name_the_address_and_drop_key_comments() -> None:
    lines = host_key_lines("10.77.0.11", ["ssh-ed25519 AAAAkey root@image", "ssh-rsa AAAArsa"])
    assert lines == ["10.77.0.11 ssh-ed25519 AAAAkey", "10.77.0.11 ssh-rsa AAAArsa"]


def test_reused_address_replaces_its_stale_known_hosts_entries() -> None:
    existing = (
        "10.77.0.11 ssh-ed25519 AAAAold\n"
        "[10.77.0.11]:22 ssh-rsa AAAAold\n"
        "10.77.0.111 ssh-ed25519 AAAAother\n"
        "10.77.0.12 ssh-ed25519 AAAAkeep\n"
    )
    updated = replace_host_entries(existing, "10.77.0.11", ["10.77.0.11 ssh-ed25519 AAAAnew"])
    assert updated == (
        "10.77.0.111 ssh-ed25519 AAAAother\n"
        "10.77.0.12 ssh-ed25519 AAAAkeep\n"
        "10.77.0.11 ssh-ed25519 AAAAnew\n"
    )


def test_ssh_argv_checks_host_keys_against_the_sandbox_known_hosts() -> None:
    argv = ssh_argv(machine("sandbox1", "10.77.0.11"), user="root")
    assert argv[0] == "ssh" and argv[-1] == "root@10.77.0.11"
    assert "StrictHostKeyChecking=yes" in argv
    assert "UserKnownHostsFile=/var/lib/provisioner-sandbox/known_hosts" in argv
    assert argv[argv.index("-i") + 1] == "/var/lib/provisioner-sandbox/id_ed25519"


def test_mounts_below_a_directory_come_deepest_first() -> None:
    mountinfo = (
        "36 35 0:30 / /var/lib/m/a/root rw - overlay overlay rw\n"
        "37 36 0:31 / /var/lib/m/a/root/proc rw - proc proc rw\n"
        "38 35 0:32 / /var/lib/m/ab rw - tmpfs tmpfs rw\n"
        "39 35 0:33 / /var/lib/m/a/with\\040space rw - tmpfs tmpfs rw\n"
    )
    found = mount_points_below(Path("/var/lib/m/a"), mountinfo)
    assert set(found) == {
        Path("/var/lib/m/a/root"), Path("/var/lib/m/a/root/proc"), Path("/var/lib/m/a/with space")
    }
    assert found.index(Path("/var/lib/m/a/root/proc")) < found.index(Path("/var/lib/m/a/root"))


def test_machines_are_ordered_by_their_number_not_alphabetically() -> None:
    assert sorted(["sandbox10", "sandbox2", "sandbox1"], key=name_order) == [
        "sandbox1", "sandbox2", "sandbox10"
    ]


def test_a_probe_of_a_program_that_is_not_installed_does_not_succeed() -> None:
    """sandbox.down on a machine that never ran the sandbox has no iptables to ask."""
    assert not succeeds(["provisioner-no-such-program", "-C"])


def test_running_a_program_that_is_not_installed_is_a_sandbox_error() -> None:
    with pytest.raises(SandboxError, match=r"provisioner-no-such-program.*not installed"):
        run(["provisioner-no-such-program"])


def test_an_image_is_patched_from_the_security_archive_beside_the_mirror() -> None:
    sources = render_security_sources("http://mirror.example.org/debian/", "bookworm")

    assert " http://mirror.example.org/debian-security bookworm-security main\n" in sources
