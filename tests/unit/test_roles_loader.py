"""Roles: found on the search path, loaded, and their variables checked before any connection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provisioner.content.roles import PROJECT_ROOT, Role, available_roles, load_role
from provisioner.content.variables import merge_role_variables
from provisioner.errors import RoleError
from provisioner.secrets.values import Secret
from provisioner.step import Handler, Plan, Probed

ROLE_PY = """\
from provisioner.errors import RoleError
from provisioner.step import Handler, Plan, Step

HANDLERS = (Handler("tiny:reload", "systemctl reload tiny"),)


def steps(host):
    yield Step("tiny step", "true", lambda probed: Plan("nothing to do"))


def validate(variables):
    if variables["tiny_port"] == 13:
        raise RoleError("tiny_port 13 is unlucky")
"""

STEPS_ONLY = "def steps(host):\n    return []\n"

DEFAULTS = """\
# The port tiny listens on.
tiny_port: 80
# Whether tiny runs at all.
tiny_enabled: true
# Names tiny greets.
tiny_names: [world]
# Share of the CPU tiny may use.
tiny_ratio: 0.5
# Password of tiny's admin page.
tiny_password: ""
# Settings passed through verbatim.
tiny_settings: {}
# The admin's mail address; required, no sensible default.
tiny_admin: null
"""

TEMPLATE = ("# {{ managed_banner }}\n"
            "port {{ tiny_port }} admin {{ tiny_admin }} on {{ facts.os_id }}\n")


def make_role(root: Path, name: str = "tiny", *, role_py: str = ROLE_PY,
              defaults: str | None = DEFAULTS, templates: dict[str, str] | None = None) -> Path:
    directory = root / name
    (directory / "templates").mkdir(parents=True)
    (directory / "role.py").write_text(role_py)
    if defaults is not None:
        (directory / "defaults.yml").write_text(defaults)
    chosen = {"tiny.conf.j2": TEMPLATE} if templates is None else templates
    for template, text in chosen.items():
        (directory / "templates" / template).write_text(text)
    return directory


@pytest.fixture
def tiny(tmp_path: Path) -> Role:
    return load_role(make_role(tmp_path / "roles"))


def merge(role: Role, **inventory_vars: Any) -> dict[str, Any]:
    return merge_role_variables([role], {"tiny_admin": "ops@example.org", **inventory_vars},
                                "host web1")


# --- finding roles ----------------------------------------------------------------------------


def test_available_roles_finds_the_projects_roles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROVISIONER_ROLES_PATH", raising=False)

    found = available_roles()

    assert (found["ufw"], found["fail2ban"]) == (PROJECT_ROOT / "roles" / "ufw",
                                                 PROJECT_ROOT / "roles" / "fail2ban")


def test_available_roles_lists_only_directories_with_a_role_py(tmp_path: Path) -> None:
    make_role(tmp_path, "tiny")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("not a role\n")

    assert available_roles([tmp_path]) == {"tiny": tmp_path / "tiny"}


def test_available_roles_first_directory_wins(tmp_path: Path) -> None:
    make_role(tmp_path / "first", "tiny")
    make_role(tmp_path / "second", "tiny")

    found = available_roles([tmp_path / "first", tmp_path / "second"])

    assert found == {"tiny": tmp_path / "first" / "tiny"}


def test_extra_role_path_adds_roles_after_the_projects(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_role(tmp_path, "tiny")
    make_role(tmp_path, "ufw")
    monkeypatch.setenv("PROVISIONER_ROLES_PATH", str(tmp_path))

    found = available_roles()

    assert (found["tiny"], found["ufw"]) == (tmp_path / "tiny", PROJECT_ROOT / "roles" / "ufw")


# --- loading a role ---------------------------------------------------------------------------


def test_load_role_reads_name_defaults_handlers_and_validate(tiny: Role) -> None:
    assert tiny.name == "tiny"
    assert tiny.defaults["tiny_names"] == ["world"]
    assert tiny.handlers == {"tiny:reload": Handler("tiny:reload", "systemctl reload tiny")}
    assert tiny.validate is not None


def test_load_role_steps_come_from_the_module(tiny: Role) -> None:
    (step,) = list(tiny.steps(None))  # type: ignore[arg-type]

    assert (step.label, step.decide(Probed(""))) == ("tiny step", Plan("nothing to do"))


def test_role_without_steps_function_is_a_role_error(tmp_path: Path) -> None:
    path = make_role(tmp_path, role_py="HANDLERS = ()\n")

    with pytest.raises(RoleError, match=r"Role tiny \(.*role\.py\) defines no steps\(host\)"):
        load_role(path)


def test_role_without_defaults_has_none(tmp_path: Path) -> None:
    assert load_role(make_role(tmp_path, defaults=None)).defaults == {}


@pytest.mark.parametrize(
    ("defaults", "message"),
    [("- tiny_port\n", "must be a mapping"), ("tiny_port: [80\n", "is not valid YAML"),
     ("tiny_port: 80\ntiny_port: 81\n", "duplicate key 'tiny_port'")],
    ids=["not-a-mapping", "bad-yaml", "duplicate-key"],
)
def test_malformed_defaults_are_a_role_error_naming_the_file(tmp_path: Path, defaults: str,
                                                             message: str) -> None:
    path = make_role(tmp_path, defaults=defaults)

    with pytest.raises(RoleError, match=message) as caught:
        load_role(path)

    assert str(path / "defaults.yml") in str(caught.value)


# --- merging and checking variables -----------------------------------------------------------


def test_inventory_values_override_role_defaults(tiny: Role) -> None:
    merged = merge(tiny, tiny_port=8080)

    assert (merged["tiny_port"], merged["tiny_enabled"]) == (8080, True)


def test_variables_of_no_role_pass_through(tiny: Role) -> None:
    assert merge(tiny, site="example")["site"] == "example"


def test_undeclared_role_variable_is_rejected_as_a_typo(tiny: Role) -> None:
    with pytest.raises(RoleError) as caught:
        merge(tiny, tiny_prot=8080)

    assert str(caught.value).startswith("host web1: variable 'tiny_prot' is not a variable of "
                                        "role 'tiny'")
    assert str(tiny.path / "defaults.yml") in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("tiny_names", "world", "should be a list like its default"),
        ("tiny_enabled", "yes", "should be a boolean"),
        ("tiny_port", "80", "should be a number"),
        ("tiny_port", True, "should be a number"),
        ("tiny_enabled", 1, "should be a boolean"),
        ("tiny_settings", ["a"], "should be a mapping"),
        ("tiny_password", 1234, "should be a string"),
    ],
    ids=["string-for-list", "string-for-bool", "string-for-number", "bool-for-number",
         "number-for-bool", "list-for-mapping", "number-for-string"],
)
def test_value_of_another_type_than_the_default_is_rejected(
        tiny: Role, name: str, value: Any, kind: str) -> None:
    with pytest.raises(RoleError, match=f"host web1: variable '{name}' {kind}"):
        merge(tiny, **{name: value})


@pytest.mark.parametrize(
    ("name", "value"),
    [("tiny_ratio", 1), ("tiny_port", 8080), ("tiny_password", Secret("pw")),
     ("tiny_names", []), ("tiny_admin", ["any", "type"])],
    ids=["int-for-float", "int-for-int", "secret-for-string", "empty-list",
         "any-type-for-null-default"],
)
def test_value_of_a_compatible_type_is_accepted(tiny: Role, name: str, value: Any) -> None:
    assert merge(tiny, **{name: value})[name] == value


def test_null_default_means_the_inventory_must_set_it(tiny: Role) -> None:
    with pytest.raises(RoleError, match="host web1: role 'tiny' needs variable 'tiny_admin', "
                                        "which is not set"):
        merge_role_variables([tiny], {}, "host web1")


def test_explicit_null_for_a_variable_with_a_default_is_rejected(tiny: Role) -> None:
    with pytest.raises(RoleError, match="tiny_names"):
        merge(tiny, tiny_names=None)


def test_template_reading_an_undefined_variable_is_rejected_before_connecting(
        tmp_path: Path) -> None:
    role = load_role(make_role(tmp_path, templates={
        "tiny.conf.j2": "port {{ tiny_port }} mode {{ tiny_mode }} on {{ host_name }}\n"}))

    with pytest.raises(RoleError) as caught:
        merge(role)

    assert str(caught.value).startswith(
        f"Template {role.template_dir / 'tiny.conf.j2'} uses undefined variable(s) tiny_mode")


def test_template_may_read_inventory_variables_of_no_role(tmp_path: Path) -> None:
    role = load_role(make_role(tmp_path, templates={"tiny.conf.j2": "{{ site }}\n"}))

    assert merge(role, site="example")["site"] == "example"


def test_template_arguments_the_role_passes_are_not_inventory_variables(tmp_path: Path) -> None:
    role_py = ROLE_PY + '\nTEMPLATE_ARGUMENTS = {"tiny.conf.j2": ("tiny_index",)}\n'
    role = load_role(make_role(tmp_path, role_py=role_py, templates={
        "tiny.conf.j2": "file {{ tiny_index }} port {{ tiny_port }}\n"}))

    assert "tiny_index" not in merge(role)


def test_template_arguments_cover_only_their_own_template(tmp_path: Path) -> None:
    role_py = ROLE_PY + '\nTEMPLATE_ARGUMENTS = {"other.conf.j2": ("tiny_index",)}\n'
    role = load_role(make_role(tmp_path, role_py=role_py, templates={
        "tiny.conf.j2": "file {{ tiny_index }}\n", "other.conf.j2": "{{ tiny_index }}\n"}))

    with pytest.raises(RoleError, match=r"tiny\.conf\.j2 uses undefined variable\(s\) tiny_index"):
        merge(role)


def test_role_validate_error_is_prefixed_with_the_origin(tiny: Role) -> None:
    with pytest.raises(RoleError, match=r"^host web1: tiny_port 13 is unlucky$"):
        merge(tiny, tiny_port=13)


def test_defaults_of_every_role_are_merged_in_role_order(tmp_path: Path) -> None:
    first = load_role(make_role(tmp_path / "a", "first", role_py=STEPS_ONLY,
                                defaults="first_x: 1\nshared: a\n", templates={}))
    second = load_role(make_role(tmp_path / "b", "second", role_py=STEPS_ONLY,
                                 defaults="second_y: 2\nshared: b\n", templates={}))

    merged = merge_role_variables([first, second], {}, "host web1")

    assert merged == {"first_x": 1, "second_y": 2, "shared": "b"}


def test_project_roles_work_with_their_defaults_alone() -> None:
    roles = [load_role(PROJECT_ROOT / "roles" / name) for name in ("ufw", "fail2ban")]

    merged = merge_role_variables(roles, {}, "host web1")

    assert (merged["ufw_ssh_port"], merged["fail2ban_maxretry"]) == (22, 5)
