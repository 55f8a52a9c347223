"""The workload's values for every host (pyinfra reads group_data/all.py as host.data).

The same values as benchmarks/roles/provbench/defaults.yml; tests/unit/test_bench_runner.py
keeps the two equal.
"""

provbench_packages = ["nginx", "fail2ban", "ufw", "postgresql", "cron"]
provbench_apt_cache_max_age = 3600
provbench_directory = "/etc/provbench"
provbench_file_count = 10
provbench_sysctl_file = "/etc/sysctl.d/60-provbench.conf"
provbench_sysctls = {
    "net.ipv4.tcp_syncookies": 1,
    "net.ipv4.conf.all.rp_filter": 1,
    "net.ipv4.conf.all.accept_redirects": 0,
    "net.ipv4.conf.all.send_redirects": 0,
    "net.ipv4.icmp_echo_ignore_broadcasts": 1,
}
provbench_header = "Managed by the provbench workload"
provbench_services = ["nginx.service", "cron.service"]
provbench_user = "deploy"
provbench_user_shell = "/bin/bash"
provbench_authorized_key = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILp6Hfr1F71pIe0YLCR8xtgDWJQQmB7iahPo30s1pWjV "
    "provbench-deploy"
)
provbench_ufw_default_incoming = "deny"
provbench_ufw_tcp_ports = [22, 80, 443]
provbench_cron_name = "provbench"
provbench_cron_job = "17 4 * * * root /usr/bin/du -s /etc/provbench >/dev/null"
