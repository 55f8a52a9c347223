"""Local throwaway Debian machines that look like fresh cloud VMs (demo, tests, benchmarks).

Each machine is a systemd-nspawn container booting systemd, on an overlay of a cached debootstrap
image, in its own network namespace on the host bridge `provbr0` (10.77.0.0/24). They are reached
over real SSH with host key checking on, so everything the project does against them is what it
would do against a real server. All functions need root except `list_machines`, `ssh_argv` and
`write_inventory`.
"""

from provisioner.sandbox.errors import SandboxError
from provisioner.sandbox.host_tools import ensure_host_tools
from provisioner.sandbox.inventory import write_inventory
from provisioner.sandbox.lifecycle import down, list_machines, up
from provisioner.sandbox.machine import Machine
from provisioner.sandbox.paths import KEY_PATH, KNOWN_HOSTS_PATH, SANDBOX_DIR
from provisioner.sandbox.ssh import ssh_argv

__all__ = [
    "KEY_PATH",
    "KNOWN_HOSTS_PATH",
    "SANDBOX_DIR",
    "Machine",
    "SandboxError",
    "down",
    "ensure_host_tools",
    "list_machines",
    "ssh_argv",
    "up",
    "write_inventory",
]
