"""Templates: strict about undefined names, and the names they use are known before connecting."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.content.templates import (
    MANAGED_BANNER,
    render_template,
    template_variables,
)
from provisioner.errors import RoleError
from provisioner.facts import Facts
from provisioner.host import Host
from provisioner.inventory.hosts import HostConfig, SshSettings
from provisioner.secrets.values import Secret

FACTS = Facts("debian", "12", "bookworm", ("debian",), 4, 8 << 30, (), "systemd", "kvm", "web1",
              "6.1.0-28-amd64", "amd64", True, (9, 2))


def templates(tmp_path: Path, **sources: str) -> Path:
    """A template directory holding name.j2 files (double underscores become slashes)."""
    for name, text in sources.items():
        path = tmp_path / "templates" / (name.replace("__", "/") + ".j2")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path / "templates"


def make_host(variables: dict[str, object], template_dir: Path | None) -> Host:
    ssh = SshSettings(identity_file=None, known_hosts=Path("/dev/null"), trust_on_first_use=False,
                      jump_host=None, connect_timeout=10.0, command_timeout=60.0,
                      sudo_password=None)
    config = HostConfig("web1", "192.0.2.10", 22, "root", (), (), variables, ssh)
    host = Host(config, variables, gather_facts=lambda: FACTS)
    host = host.for_role(template_dir) if template_dir is not None else host
    return host


def test_render_template_substitutes_variables_and_keeps_the_final_newline(
        tmp_path: Path) -> None:
    directory = templates(tmp_path, motd="port {{ port }}\n")

    assert render_template(directory, "motd.j2", {"port": 22}) == "port 22\n"


def test_render_template_trims_block_lines(tmp_path: Path) -> None:
    directory = templates(tmp_path, list="{% for x in items %}\n  {{ x }}\n{% endfor %}\n")

    assert render_template(directory, "list.j2", {"items": ["a", "b"]}) == "  a\n  b\n"


def test_undefined_variable_is_a_role_error_naming_the_template_and_variable(
        tmp_path: Path) -> None:
    directory = templates(tmp_path, etc__jail="bantime = {{ fail2ban_bantime }}\n")

    with pytest.raises(RoleError) as caught:
        render_template(directory, "etc/jail.j2", {})

    assert f"Template {directory / 'etc/jail.j2'} uses an undefined variable" in str(caught.value)
    assert "'fail2ban_bantime' is undefined" in str(caught.value)


def test_undefined_variable_in_a_condition_is_a_role_error(tmp_path: Path) -> None:
    directory = templates(tmp_path, motd="{% if verbose %}on{% endif %}\n")

    with pytest.raises(RoleError, match="'verbose' is undefined"):
        render_template(directory, "motd.j2", {})


@pytest.mark.parametrize("source", ["{{ key | b64encode }}\n", "{% if x %}\n"])
def test_a_template_jinja_cannot_read_is_a_role_error_naming_it(tmp_path: Path,
                                                                source: str) -> None:
    from provisioner.content.templates import template_variables

    directory = templates(tmp_path, app__env=source)

    with pytest.raises(RoleError, match=r"Template .*app/env\.j2 \(line 1\) cannot be read"):
        template_variables(directory)


def test_missing_template_is_a_role_error_naming_it(tmp_path: Path) -> None:
    directory = templates(tmp_path, motd="x\n")

    with pytest.raises(RoleError, match=r"Template .*nope\.j2 does not exist"):
        render_template(directory, "nope.j2", {})


def test_managed_banner_is_always_available(tmp_path: Path) -> None:
    directory = templates(tmp_path, motd="# {{ managed_banner }}\n")

    assert render_template(directory, "motd.j2", {}) == f"# {MANAGED_BANNER}\n"


def test_a_secret_renders_as_its_real_value_for_the_host(tmp_path: Path) -> None:
    directory = templates(tmp_path, conf="plain={{ pw }} filtered={{ pw | upper }} "
                                         "nested={{ users[0].pw }} explicit={{ pw | reveal }}\n")

    rendered = render_template(directory, "conf.j2", {"pw": Secret("hunter2"),
                                                      "users": [{"pw": Secret("s3cret")}]})

    assert rendered == "plain=hunter2 filtered=HUNTER2 nested=s3cret explicit=hunter2\n"


def test_host_render_offers_facts_and_host_name(tmp_path: Path) -> None:
    directory = templates(tmp_path, motd="{{ host_name }} runs {{ facts.os_id }} "
                                         "{{ facts.os_codename }} on {{ facts.cpus }} cpus\n")
    host = make_host({}, directory)

    assert host.render("motd.j2") == "web1 runs debian bookworm on 4 cpus\n"


def test_host_render_extra_values_override_variables(tmp_path: Path) -> None:
    directory = templates(tmp_path, motd="{{ port }}\n")
    host = make_host({"port": 22}, directory)

    assert host.render("motd.j2", port=2222) == "2222\n"


def test_host_render_on_a_host_not_bound_to_a_role_is_a_bug() -> None:
    with pytest.raises(RuntimeError, match="not bound to a role"):
        make_host({}, None).render("motd.j2")


def counting_host(template_dir: Path, calls: list[str]) -> Host:
    def gather() -> Facts:
        calls.append("gathered")
        return FACTS

    ssh = SshSettings(None, Path("/dev/null"), False, None, 10.0, 60.0, None)
    host = Host(HostConfig("web1", "192.0.2.10", 22, "root", (), (), {}, ssh), {"port": 22},
                gather_facts=gather)
    host = host.for_role(template_dir) if template_dir is not None else host
    return host


def test_host_does_not_gather_facts_for_a_template_that_reads_none(tmp_path: Path) -> None:
    calls: list[str] = []
    host = counting_host(templates(tmp_path, motd="{{ port }}\n"), calls)

    host.render("motd.j2")

    assert (calls, host.facts_gathered) == ([], False)


def test_host_gathers_facts_once_for_templates_that_read_them(tmp_path: Path) -> None:
    calls: list[str] = []
    host = counting_host(templates(tmp_path, motd="{{ facts.os_id }}\n"), calls)

    host.render("motd.j2")
    host.render("motd.j2")

    assert calls == ["gathered"]


def test_template_variables_lists_the_top_level_names_each_template_reads(
        tmp_path: Path) -> None:
    directory = templates(
        tmp_path,
        etc__jail="{% set local = 1 %}{{ local }} {{ fail2ban_bantime }}\n"
                  "{% for ip in fail2ban_ignoreip %}{{ ip }} {{ loop.index }}{% endfor %}\n"
                  "{{ facts.os_id }}\n",
        motd="{{ managed_banner }}\n",
    )

    assert template_variables(directory) == {
        "etc/jail.j2": frozenset({"fail2ban_bantime", "fail2ban_ignoreip", "facts"}),
        "motd.j2": frozenset({"managed_banner"}),
    }
