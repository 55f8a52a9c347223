"""The benchmark workload W as a pyinfra deploy (run: pyinfra INVENTORY deploy.py --sudo -y).

Values come from group_data/all.py (host.data); the file template is templates/file.conf.j2.
"""

from io import StringIO

import provbench_ufw
from pyinfra import host
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

data = host.data

apt.packages(
    name="Install the workload's packages",
    packages=data.provbench_packages,
    update=True,
    cache_time=data.provbench_apt_cache_max_age,
)

files.directory(
    name=f"Directory {data.provbench_directory}",
    path=data.provbench_directory,
    user="root",
    group="root",
    mode="755",
)

rendered = [
    files.template(
        name=f"Render file{index}.conf",
        src="templates/file.conf.j2",
        dest=f"{data.provbench_directory}/file{index}.conf",
        user="root",
        group="root",
        mode="644",
        host_name=host.name,
        provbench_file_index=index,
    )
    for index in range(data.provbench_file_count)
]

sysctl_lines = [f"# {data.provbench_header}"]
sysctl_lines += [f"{key} = {value}" for key, value in data.provbench_sysctls.items()]
sysctl_file = files.put(
    name="sysctl drop-in",
    src=StringIO("\n".join(sysctl_lines) + "\n"),
    dest=data.provbench_sysctl_file,
    user="root",
    group="root",
    mode="644",
)
server.shell(
    name="Apply the sysctl drop-in",
    commands=[f"sysctl -q -p {data.provbench_sysctl_file}"],
    _if=sysctl_file.did_change,
)

for unit in data.provbench_services:
    systemd.service(name=f"{unit} enabled and running", service=unit, running=True, enabled=True)

server.user(
    name=f"User {data.provbench_user}",
    user=data.provbench_user,
    shell=data.provbench_user_shell,
    home=f"/home/{data.provbench_user}",
    create_home=True,
    public_keys=[data.provbench_authorized_key],
    delete_keys=True,
)

provbench_ufw.default_policy(
    name=f"ufw default incoming {data.provbench_ufw_default_incoming}",
    policy=data.provbench_ufw_default_incoming,
)
provbench_ufw.rules(name="ufw rules", allowed_tcp_ports=data.provbench_ufw_tcp_ports)
provbench_ufw.enabled(name="ufw enabled")

files.put(
    name=f"cron.d {data.provbench_cron_name}",
    src=StringIO(f"# {data.provbench_header}\n{data.provbench_cron_job}\n"),
    dest=f"/etc/cron.d/{data.provbench_cron_name}",
    user="root",
    group="root",
    mode="644",
)

systemd.service(
    name="Reload nginx when a rendered file changed",
    service="nginx.service",
    reloaded=True,
    _if=any_changed(*rendered),
)
