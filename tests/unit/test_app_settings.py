"""The app_* variables as read_app reads them: every refusal names its variable, a STET-like
configuration reads back as written, and nginx's upstreams take their servers from an app
(``app:`` instead of ``servers``), whose options the servers file's lines carry."""

from __future__ import annotations

from typing import Any

import pytest

from provisioner.content.roles import PROJECT_ROOT, load_role
from provisioner.content.variables import merge_role_variables
from provisioner.errors import RoleError
from provisioner.secrets.host_store import HostSecret
from provisioner.secrets.values import Secret
from roles.app.servers import server_options
from roles.app.settings import AppSettings, Volume, check_references, read_app
from roles.nginx.upstreams import Upstream, read_upstreams

ROLE = load_role(PROJECT_ROOT / "roles" / "app")
#: The README's STET host, as the inventory writes it (role defaults not merged).
STET: dict[str, Any] = {
    "app_name": "stet", "app_image": "stet-api", "app_source": "archive",
    "app_archive_dir": "~/releases/stet", "app_instances": [8000, 8001],
    "app_user": "10001:10001", "app_environment": {"LOG_LEVEL": "info"},
    "app_secrets": {"DB_PASSWORD": HostSecret("stet_db_password")},
    "app_migration_command": "python manage.py migrate", "app_backup_host": "db1",
    "nginx_upstreams": [{"name": "api", "app": "stet"}]}


def stet(**overrides: Any) -> AppSettings:
    """read_app of the STET host over the role's defaults, with these variables changed."""
    return read_app({**ROLE.defaults, **STET, **overrides})


def merged(**overrides: Any) -> dict[str, Any]:
    """The STET host's variables as a run checks them before contact (the role's validate)."""
    return merge_role_variables([ROLE], {**STET, **overrides}, "host app1")


# --- a valid configuration -----------------------------------------------------------------

def test_the_stet_configuration_reads_back_as_written() -> None:
    settings = stet()
    assert (settings.name, settings.image, settings.source, settings.archive_dir) == \
        ("stet", "stet-api", "archive", "~/releases/stet")
    assert settings.instances == (8000, 8001)
    assert (settings.uid, settings.gid) == (10001, 10001)
    assert settings.environment == (("LOG_LEVEL", "info"),)
    assert settings.secrets == (("DB_PASSWORD", HostSecret("stet_db_password")),)
    assert settings.secrets_as == "files"
    assert (settings.migration_command, settings.backup_host) == \
        ("python manage.py migrate", "db1")


def test_the_defaults_fill_in_what_the_stet_host_leaves_out() -> None:
    settings = stet()
    assert (settings.alternate_offset, settings.container_port) == (10000, 8080)
    assert (settings.health_path, settings.health_timeout) == ("/health", 60)
    assert (settings.memory, settings.cpus, settings.volumes) == ("512m", "1", ())
    assert (settings.keep_releases, settings.drain_timeout, settings.stop_timeout) == (3, 30, 10)


def test_the_stet_host_passes_the_check_before_contact() -> None:
    assert merged()["app_name"] == "stet"


def test_each_instance_has_its_own_port_and_that_plus_the_offset() -> None:
    assert stet().ports_of(8001) == (8001, 18001)


def test_a_secret_is_given_as_a_file_named_after_it_in_lower_case() -> None:
    assert stet().secret_file("DB_PASSWORD") == "/run/secrets/db_password"


def test_a_registry_source_needs_no_archive_directory() -> None:
    assert stet(app_source="registry", app_archive_dir="").archive_dir == ""


def test_environment_values_are_text_as_docker_reads_them() -> None:
    settings = stet(app_environment={"WORKERS": 4, "DEBUG": False, "EMPTY": None})
    assert settings.environment == (("WORKERS", "4"), ("DEBUG", "false"), ("EMPTY", ""))


def test_volumes_read_as_host_path_container_path_and_read_only() -> None:
    settings = stet(app_volumes=["/srv/stet/data:/data", "/srv/stet/static:/static:ro"])
    assert settings.volumes == (Volume("/srv/stet/data", "/data", False),
                                Volume("/srv/stet/static", "/static", True))


@pytest.mark.parametrize(("cpus", "read"), [(1, "1"), (0.5, "0.5"), (2, "2")])
def test_app_cpus_is_taken_as_a_number(cpus: Any, read: str) -> None:
    assert stet(app_cpus=cpus).cpus == read


# --- refusals, each naming its variable ----------------------------------------------------

@pytest.mark.parametrize(("overrides", "named"), [
    ({"app_name": ""}, "app_name is ''"),
    ({"app_name": "Stet"}, "app_name is 'Stet'"),
    ({"app_name": "1stet"}, "app_name is '1stet'"),
    ({"app_name": "stet_api"}, "app_name is 'stet_api'"),
    ({"app_name": "s" * 32}, "app_name is 's{32}'"),
    ({"app_name": 5}, "app_name is 5"),
], ids=["empty", "upper-case", "digit-first", "underscore", "too-long", "a-number"])
def test_an_app_name_outside_the_pattern_is_refused(overrides: dict[str, Any],
                                                     named: str) -> None:
    with pytest.raises(RoleError, match=named):
        stet(**overrides)


@pytest.mark.parametrize("instances", [8000, "8000", [], ["8000"], [True], None, {8000: 1}],
                         ids=["a-number", "text", "empty", "text-port", "boolean", "none",
                              "a-mapping"])
def test_app_instances_that_are_not_a_list_of_ports_are_refused(instances: Any) -> None:
    with pytest.raises(RoleError, match=r"app_instances is .*a list of the instances' host ports"):
        stet(app_instances=instances)


def test_an_instance_listed_twice_is_refused() -> None:
    with pytest.raises(RoleError, match=r"app_instances lists a port twice: \[8000, 8000\]"):
        stet(app_instances=[8000, 8000])


@pytest.mark.parametrize(("overrides", "port"), [
    ({"app_instances": [1000]}, 1000),
    ({"app_instances": [8000, 1023]}, 1023),
    ({"app_instances": [60000], "app_alternate_port_offset": 10000}, 70000),
], ids=["below-1024", "one-below-1024", "offset-past-65535"])
def test_a_port_below_1024_or_past_65535_is_refused(overrides: dict[str, Any],
                                                     port: int) -> None:
    with pytest.raises(RoleError, match=rf"app_instances with app_alternate_port_offset .* "
                                        rf"give port {port}; .* from 1024 to 65535"):
        stet(**overrides)


@pytest.mark.parametrize(("overrides", "port"), [
    ({"app_instances": [5432]}, 5432),
    ({"app_instances": [6432]}, 6432),
    ({"app_instances": [1432], "app_alternate_port_offset": 5000}, 6432),
], ids=["postgres", "pgbouncer", "port-plus-offset"])
def test_a_port_the_hosts_own_services_use_is_refused(overrides: dict[str, Any],
                                                       port: int) -> None:
    with pytest.raises(RoleError, match=rf"app_instances: port {port} .* the host's own services"):
        stet(**overrides)


def test_an_instances_port_plus_offset_that_is_another_instances_port_is_refused() -> None:
    with pytest.raises(RoleError, match=r"app_instances with app_alternate_port_offset 10000 use "
                                        r"port 18000 twice .* choose a larger offset"):
        stet(app_instances=[8000, 18000])


@pytest.mark.parametrize("user", ["0:0", "0:10001", "10001:0", "stet", "10001", 10001, "",
                                  "10001:stet", "-1:-1"])
def test_app_user_that_is_root_or_not_two_numbers_is_refused(user: Any) -> None:
    with pytest.raises(RoleError, match=r"app_user is .* never runs as root"):
        stet(app_user=user)


@pytest.mark.parametrize("value", [HostSecret("stet_token"), Secret("s3cret", "env:STET_TOKEN")],
                         ids=["host-secret", "secret-from-here"])
def test_a_secret_in_app_environment_is_refused(value: Any) -> None:
    with pytest.raises(RoleError, match="app_environment: TOKEN is a secret; put secrets in "
                                        "app_secrets"):
        stet(app_environment={"TOKEN": value})


@pytest.mark.parametrize("text", ["line one\nline two", "nul\0byte"], ids=["newline", "nul"])
def test_an_environment_value_holding_a_line_break_is_refused(text: str) -> None:
    with pytest.raises(RoleError, match="app_environment: MOTD holds a line break"):
        stet(app_environment={"MOTD": text})


@pytest.mark.parametrize(("environment", "named"), [
    (["LOG_LEVEL=info"], "app_environment must be a mapping"),
    ({"log-level": "info"}, "app_environment: 'log-level' is not an environment variable name"),
])
def test_app_environment_that_docker_cannot_take_is_refused(environment: Any,
                                                            named: str) -> None:
    with pytest.raises(RoleError, match=named):
        stet(app_environment=environment)


def test_a_secret_written_as_plain_text_is_refused_without_showing_it() -> None:
    """Judged on the inventory's own values (validate_login): by validate's time every
    controller secret is its value, as plain text is."""
    with pytest.raises(RoleError, match="app_secrets: DB_PASSWORD is written in the inventory "
                                        "as text") as refused:
        check_references({"app_secrets": {"DB_PASSWORD": "hunter2"}})
    assert "hunter2" not in str(refused.value)


@pytest.mark.parametrize(("secrets", "named"), [
    ([HostSecret("stet_db_password")], "app_secrets must be a mapping"),
    ({"db-password": HostSecret("x")}, "app_secrets: 'db-password' is not an environment"),
])
def test_app_secrets_that_are_not_named_references_are_refused(secrets: Any, named: str) -> None:
    with pytest.raises(RoleError, match=named):
        stet(app_secrets=secrets)


def test_a_secret_reference_from_this_machine_is_taken() -> None:
    key = Secret("k3y", "env:STET_API_KEY")
    assert stet(app_secrets={"API_KEY": key}).secrets == (("API_KEY", key),)


@pytest.mark.parametrize("volume", [
    "/srv/../etc:/data", "/srv/stet/data:/data/../etc", "/srv/../x:/data:ro",
    "data:/data", "/data:data", "./data:/data", "/data", "/data:/data:rw", "/data :/data"],
    ids=["dotdot-host", "dotdot-container", "dotdot-inside-with-ro", "relative-host",
         "relative-container", "dot-host", "no-container-path", "rw-suffix", "space"])
def test_a_volume_with_dotdot_or_a_relative_path_is_refused(volume: str) -> None:
    with pytest.raises(RoleError, match=r"app_volumes: .* is not /host/path:/container/path"):
        stet(app_volumes=[volume])


def test_app_volumes_as_one_text_is_refused() -> None:
    with pytest.raises(RoleError, match="app_volumes must be a list"):
        stet(app_volumes="/srv/stet/data:/data")


@pytest.mark.parametrize("volume", ["/srv/stet/..:/data", "/srv/stet/data:/data/..:ro"],
                         ids=["host-path-ends-in-dotdot", "container-path-ends-in-dotdot"])
def test_a_volume_path_ending_in_dotdot_is_refused(volume: str) -> None:
    with pytest.raises(RoleError, match="app_volumes"):
        stet(app_volumes=[volume])


@pytest.mark.parametrize("archive_dir", ["", "releases/stet", "~stet/releases"],
                         ids=["missing", "relative", "another-users-home"])
def test_an_archive_source_without_an_absolute_archive_dir_is_refused(archive_dir: str) -> None:
    with pytest.raises(RoleError, match="app_source is archive but app_archive_dir is"):
        stet(app_archive_dir=archive_dir)


@pytest.mark.parametrize("cpus", ["one", "", 0, -1, True, "1.", "0,5", None],
                         ids=["word", "empty", "zero", "negative", "boolean", "trailing-dot",
                              "comma", "none"])
def test_app_cpus_that_is_not_a_positive_number_is_refused(cpus: Any) -> None:
    with pytest.raises(RoleError, match=r"app_cpus is .* a number of CPUs"):
        stet(app_cpus=cpus)


@pytest.mark.parametrize("cpus", ["0", "0.0"])
def test_app_cpus_as_text_is_refused_even_zero(cpus: str) -> None:
    with pytest.raises(RoleError, match="app_cpus"):
        stet(app_cpus=cpus)


@pytest.mark.parametrize(("overrides", "named"), [
    ({"app_source": "git"}, "app_source is 'git'; it is one of archive, registry"),
    ({"app_secrets_as": "env"}, "app_secrets_as is 'env'; it is one of files, environment"),
    ({"app_image": "stet-api:v1"}, "app_image is 'stet-api:v1'"),
    ({"app_image": ""}, "app_image is ''"),
    ({"app_memory": "512MB"}, "app_memory is '512MB'"),
    ({"app_health_path": "health"}, "app_health_path is 'health'"),
    ({"app_health_timeout": 0}, "app_health_timeout is 0; it is a whole number from 1 to 900"),
    ({"app_alternate_port_offset": 0}, "app_alternate_port_offset is 0"),
    ({"app_container_port": 70000}, "app_container_port is 70000"),
    ({"app_keep_releases": 1}, "app_keep_releases is 1; it is a whole number from 2 to 100"),
    ({"app_drain_timeout": True}, "app_drain_timeout is True"),
    ({"app_stop_timeout": "10"}, "app_stop_timeout is '10'"),
])
def test_other_settings_outside_their_range_are_refused_by_name(overrides: dict[str, Any],
                                                                named: str) -> None:
    with pytest.raises(RoleError, match=named):
        stet(**overrides)


# --- the same settings through the check a run makes before contact --------------------------

@pytest.mark.parametrize("cpus", [1, 0.5])
def test_app_cpus_as_a_yaml_number_passes_the_check_before_contact(cpus: float) -> None:
    assert merged(app_cpus=cpus)["app_cpus"] == cpus


def test_a_secret_from_this_machine_passes_the_check_before_contact() -> None:
    key = Secret("k3y", "env:STET_API_KEY")
    assert merged(app_secrets={"API_KEY": key})["app_secrets"] == {"API_KEY": key}


def test_a_secret_from_this_machine_in_app_environment_is_refused_before_contact() -> None:
    """On the inventory's own values (validate_login), where it is still a Secret."""
    with pytest.raises(RoleError, match="app_environment: TOKEN is a secret"):
        check_references({"app_environment": {"TOKEN": Secret("s3cret", "env:STET_TOKEN")}})


def test_a_host_secret_in_app_environment_is_refused_before_contact() -> None:
    with pytest.raises(RoleError, match="host app1: app_environment: TOKEN is a secret"):
        merged(app_environment={"TOKEN": HostSecret("stet_token")})


# --- nginx upstreams that take their servers from an app -------------------------------------

def test_an_upstream_may_name_an_app_instead_of_servers() -> None:
    [upstream] = read_upstreams({"nginx_upstreams": [{"name": "api", "app": "stet"}]})
    assert upstream == Upstream("api", (), app="stet", max_fails=0)


@pytest.mark.parametrize("app", ["Stet", "stet_api", "", 5, ["stet"]],
                         ids=["upper-case", "underscore", "empty", "a-number", "a-list"])
def test_an_upstream_with_a_bad_app_name_is_refused(app: Any) -> None:
    with pytest.raises(RoleError, match=r"nginx_upstreams: upstream 'api' has app .*; app names "
                                        r"the app_name"):
        read_upstreams({"nginx_upstreams": [{"name": "api", "app": app}]})


def test_an_upstream_with_both_an_app_and_servers_is_refused() -> None:
    with pytest.raises(RoleError, match="upstream 'api' has app 'stet' and servers"):
        read_upstreams({"nginx_upstreams": [
            {"name": "api", "app": "stet", "servers": ["127.0.0.1:8000"]}]})


def test_an_upstream_with_neither_an_app_nor_servers_is_refused() -> None:
    with pytest.raises(RoleError, match="upstream 'api' needs servers"):
        read_upstreams({"nginx_upstreams": [{"name": "api"}]})


def test_the_server_options_are_those_of_the_upstream_naming_the_app() -> None:
    variables = {"nginx_upstreams": [
        {"name": "web", "servers": ["127.0.0.1:9000"], "max_fails": 9},
        {"name": "shop", "app": "shop", "max_fails": 7},
        {"name": "api", "app": "stet", "max_fails": 5, "fail_timeout": "10s"}]}
    assert server_options(variables, "stet") == "max_fails=5 fail_timeout=10s"


def test_an_apps_instances_are_never_taken_out_by_nginx_unless_the_inventory_says() -> None:
    """max_fails 0: each move health-checks its instance, and a passing blip (Docker
    re-creating its NAT rules) must not take both out for fail_timeout."""
    assert server_options(STET, "stet") == "max_fails=0 fail_timeout=30s"


@pytest.mark.parametrize("upstreams", [
    [], [{"name": "api", "servers": ["127.0.0.1:8000"]}], [{"name": "shop", "app": "shop"}]],
    ids=["no-upstreams", "servers-only", "another-app"])
def test_no_upstream_naming_the_app_is_refused_with_an_example(upstreams: list[Any]) -> None:
    with pytest.raises(RoleError, match=r"no nginx upstream takes its servers from app 'stet': "
                                        r"add one to nginx_upstreams, "
                                        r"e.g. \{name: api, app: stet\}"):
        server_options({"nginx_upstreams": upstreams}, "stet")


@pytest.mark.parametrize("name", ["provisioner", "ssl", "nginx", "www-data", "nobody",
                                  "systemd-network"])
def test_an_app_named_after_a_system_account_or_directory_is_refused(name: str) -> None:
    with pytest.raises(RoleError, match=f"app_name '{name}' is a system account's or another "
                                        "program's name"):
        stet(app_name=name)


@pytest.mark.parametrize("user", ["33:33", "999:10001", "10001:65534", "60000:60000"])
def test_a_container_user_outside_the_normal_account_range_is_refused(user: str) -> None:
    with pytest.raises(RoleError, match=f"app_user is '{user}'; .* from 1000 to 59999"):
        stet(app_user=user)


@pytest.mark.parametrize("volume", ["/home/admin:/data", "/var/tmp:/tmp", "/var/lib/postgresql:/d",
                                    "/srv:/data"])
def test_a_writable_volume_outside_the_apps_own_directories_is_refused(volume: str) -> None:
    with pytest.raises(RoleError, match="must be one of the app's own under /srv, /opt"):
        stet(app_volumes=[volume])


def test_anything_else_may_be_mounted_read_only() -> None:
    assert stet(app_volumes=["/home/admin/static:/static:ro"]).volumes[0].read_only
