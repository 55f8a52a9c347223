"""app spec: the container's account has the configured uid; its environment and secret files
are private; the template unit passes systemd's checks; every deployed instance runs its live
version as that non-root uid, published on 127.0.0.1 only, healthy; and nginx's server list is
exactly the live ports."""

from __future__ import annotations

from typing import Any

from roles.app.layout import Layout
from roles.app.servers import parse_live, probe_live, render_servers, server_options
from roles.app.settings import AppSettings, read_app


def _settings(role_vars: dict[str, Any]) -> AppSettings:
    """read_app over the JSON verify hands over (secrets are references there, checked by
    name only: their values are the secret store's business)."""
    return read_app({**role_vars, "app_secrets": {}})


def _live(host: Any, settings: AppSettings) -> dict[int, int]:
    return parse_live(host.check_output(probe_live(settings)), settings.instances)


def test_the_containers_account_has_the_configured_uid(host: Any,
                                                        role_vars: dict[str, Any]) -> None:
    settings = _settings(role_vars)
    user = host.user(settings.name)
    assert (user.uid, user.gid, user.shell) == (settings.uid, settings.gid, "/usr/sbin/nologin")


def test_environment_and_secret_files_are_private(host: Any, role_vars: dict[str, Any]) -> None:
    layout = Layout(role_vars["app_name"])
    environment = host.file(layout.container_env)
    assert (environment.user, environment.mode) == ("root", 0o600)
    for name in role_vars.get("app_secrets") or {}:
        if role_vars["app_secrets_as"] != "files":
            continue
        secret = host.file(f"{layout.secrets_dir}/{name.lower()}")
        assert (secret.user, secret.mode) == (role_vars["app_name"], 0o400)


def test_the_template_unit_passes_systemd_analyze_verify(host: Any,
                                                         role_vars: dict[str, Any]) -> None:
    unit = f"/etc/systemd/system/{Layout(role_vars['app_name']).unit_template}.service"
    assert host.file(unit).exists
    host.run_expect([0], f"systemd-analyze verify {unit}")


def test_each_deployed_instance_serves_as_the_non_root_uid_on_loopback(
        host: Any, role_vars: dict[str, Any]) -> None:
    settings = _settings(role_vars)
    layout = Layout(settings.name)
    for instance, port in _live(host, settings).items():
        assert host.service(layout.unit(port)).is_running, instance
        container = layout.container(port)
        user = host.check_output(f"docker inspect --format '{{{{.Config.User}}}}' {container}")
        assert user == f"{settings.uid}:{settings.gid}"
        bindings = host.check_output(f"docker port {container}").split()
        assert all(binding.startswith("127.0.0.1:") for binding in bindings
                   if ":" in binding), bindings
        code = host.check_output(f"curl -s -o /dev/null -w '%{{http_code}}' --max-time 5 "
                                 f"http://127.0.0.1:{port}{settings.health_path}")
        assert code.startswith("2"), (instance, code)


def test_nginx_sends_to_exactly_the_live_ports(host: Any, role_vars: dict[str, Any]) -> None:
    settings = _settings(role_vars)
    wanted = render_servers(settings, _live(host, settings),
                            server_options(role_vars, settings.name))
    assert host.file(Layout(settings.name).servers).content_string == wanted
