"""A test role: Debian's nginx serving sites from a config set checked by ``nginx -t``.

The set is /etc/nginx/configset-common.conf (an include at nginx.conf's level that both sites
read) and one conf.d file per site; conf.d is managed, so a site dropped from the variables is
removed in the same swap. A reload follows a change. The package's stock nginx.conf and its
default site stay as they are: the set must be checked together with the files it does not own.
"""

from __future__ import annotations

from collections.abc import Iterator

from provisioner.host import Host
from provisioner.ops.apt import ensure_packages
from provisioner.ops.config_set import ensure_config_set
from provisioner.ops.systemd import ensure_service, reload_service
from provisioner.step import Step

HANDLERS = (reload_service("nginx.service"),)
COMMON = "/etc/nginx/configset-common.conf"


def steps(host: Host) -> Iterator[Step]:
    yield ensure_packages(host, ["nginx"])
    yield ensure_config_set(host, "/etc/nginx", nginx_files(host),
                            check=str(host.vars["configset_check"]),
                            managed=["/etc/nginx/conf.d"], notify=["nginx:reload"])
    yield ensure_service(host, "nginx.service")


def nginx_files(host: Host) -> dict[str, str]:
    generation = int(host.vars["configset_generation"])
    files = {COMMON: ("default_type text/plain;\n"
                      f'add_header X-Config-Set "generation {generation}" always;\n')}
    for name, port in dict(host.vars["configset_sites"]).items():
        broken = "    this_is_not_a_directive on;\n" if name == host.vars[
            "configset_broken_site"] else ""
        files[f"/etc/nginx/conf.d/{name}.conf"] = (
            f"server {{\n    listen {int(port)};\n    include {COMMON};\n{broken}"
            f'    location / {{ return 200 "{name} generation {generation}\\n"; }}\n}}\n')
    return files
