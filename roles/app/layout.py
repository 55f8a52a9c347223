"""Where an application lives on its host: one place for every path, unit and container name.

    /etc/<app>/container.env          the container's environment (0600 root: the docker
                                      client reads it), secrets too when given as environment
    /etc/<app>/secrets/<name>         each secret as a file (0400, the container's uid), mounted
                                      read-only at /run/secrets
    /var/lib/provisioner/apps/<app>/
        move, instances               the program moving one instance to a version (move.py),
                                      and the instances' two ports it reads
        live/<instance>               "<port> <version>": the port serving the instance now
        slots/<port>.env              IMAGE= and VERSION= the unit on that port starts
        releases/<version>.tar        image archives sent by deploys (pruned to the keep count)
        deploy.lock, history          the deploy lock's record, one line per deploy
    /etc/nginx/apps/<app>.servers     the nginx upstream's server lines: the live ports
    /etc/systemd/system/<app>@.service  one instance per port (<app>@8000, <app>@18000)

The live files are the truth a deploy moves: provision renders the upstream from them, so a
provision after a deploy never sends traffic back to a stopped port.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.release import LOCK_FILE

#: The role's name: the owner of its units in the systemd machinery (roles/systemd).
OWNER = "app"
STATE_ROOT = "/var/lib/provisioner/apps"
NGINX_APPS = "/etc/nginx/apps"


@dataclass(frozen=True)
class Layout:
    app: str

    @property
    def etc(self) -> str:
        return f"/etc/{self.app}"

    @property
    def container_env(self) -> str:
        return f"{self.etc}/container.env"

    @property
    def secrets_dir(self) -> str:
        return f"{self.etc}/secrets"

    @property
    def state(self) -> str:
        return f"{STATE_ROOT}/{self.app}"

    @property
    def live_dir(self) -> str:
        return f"{self.state}/live"

    @property
    def slots_dir(self) -> str:
        return f"{self.state}/slots"

    @property
    def releases_dir(self) -> str:
        return f"{self.state}/releases"

    @property
    def move_program(self) -> str:
        """The program moving one instance to a version (move.py)."""
        return f"{self.state}/move"

    @property
    def instances_table(self) -> str:
        """``<instance> <port> <alternate port>`` per line: what the move program moves."""
        return f"{self.state}/instances"

    @property
    def lock(self) -> str:
        """The deploy lock's record (provisioner/deploy/lock.py)."""
        return f"{self.state}/{LOCK_FILE}"

    @property
    def servers(self) -> str:
        return f"{NGINX_APPS}/{self.app}.servers"

    @property
    def unit_template(self) -> str:
        """The systemd template's base name (UnitSpec.name)."""
        return f"{self.app}@"

    def live(self, instance: int) -> str:
        return f"{self.live_dir}/{instance}"

    def slot_env(self, port: int | str) -> str:
        return f"{self.slots_dir}/{port}.env"

    def archive(self, version: str) -> str:
        return f"{self.releases_dir}/{version}.tar"

    def unit(self, port: int | str) -> str:
        return f"{self.app}@{port}.service"

    def container(self, port: int | str) -> str:
        return f"{self.app}-{port}"
