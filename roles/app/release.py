"""The app's releases as ``invoke deploy`` ships them (provisioner/release.py's Release).

A version comes from an image archive on the controller (app_source: archive, sent once and
``docker load``-ed) or from a registry (``docker pull`` on the host). Every instance moves by
the program of move.py, which a deploy installs from its own inventory before the first move.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from provisioner.commands import join, quote
from provisioner.release import Artifact, InstanceState, Preflight
from roles.app.container import container_arguments
from roles.app.layout import Layout
from roles.app.move import UNIT_PREFIX, detached, install_program
from roles.app.settings import AppSettings
from roles.nginx.role import READY as NGINX_READY


@dataclass(frozen=True)
class AppRelease:
    settings: AppSettings
    #: The server lines' options, from the nginx upstream that takes its servers from the app.
    server_options: str
    #: Where the archives are on the controller (app_archive_dir resolved).
    archive_dir: Path | None

    @property
    def name(self) -> str:
        return self.settings.name

    @property
    def instances(self) -> tuple[str, ...]:
        return tuple(str(port) for port in self.settings.instances)

    @property
    def keep_releases(self) -> int:
        return self.settings.keep_releases

    @property
    def backup_host(self) -> str:
        return self.settings.backup_host if self.settings.migration_command else ""

    @property
    def move_timeout(self) -> int:
        settings = self.settings
        return settings.health_timeout + settings.drain_timeout + 2 * settings.stop_timeout + 90

    @property
    def layout(self) -> Layout:
        return Layout(self.settings.name)

    @property
    def state_dir(self) -> str:
        return self.layout.state

    def artifact(self, version: str) -> Artifact | None:
        if self.settings.source != "archive" or self.archive_dir is None:
            return None
        return Artifact(self.archive_dir / f"{self.name}-{version}.tar",
                        self.layout.archive(version))

    def preflight(self, version: str) -> str:
        """``problem: ...`` lines, the image's presence and the archive's checksum."""
        image = quote(self.settings.image_of(version))
        need_kb = self.settings.min_free_disk_mb * 1024
        lines = [
            "command -v docker >/dev/null || echo 'problem: docker is not installed (the "
            "docker role comes before app)'",
            "docker info --format '{{.ID}}' >/dev/null 2>&1 || echo 'problem: the Docker "
            "daemon does not answer'",
            f"[ -x {quote(self.layout.move_program)} ] && [ -f {quote(self.layout.servers)} ] "
            "|| echo 'problem: the app is not provisioned here yet; run invoke provision first'",
            f"{NGINX_READY} || echo 'problem: nginx is not running'",
            f"systemctl list-units --plain --no-legend --state=active,activating "
            f"{quote(UNIT_PREFIX + self.name + '-*')} | grep -q . && echo 'problem: a move of "
            f"{self.name} is still running on the host (units {UNIT_PREFIX}{self.name}-*); "
            "wait for it to end'",
            # Space only matters for an image still to come (a rollback to one at hand needs
            # none, and is what a full disk calls for).
            f"docker image inspect {image} >/dev/null 2>&1 || {{ "
            "free=$(df -Pk /var/lib/docker 2>/dev/null | awk 'NR==2 {print $4}'); "
            f"[ \"${{free:-0}}\" -ge {need_kb} ] || echo \"problem: only "
            f"$((${{free:-0}} / 1024)) MB free under /var/lib/docker; app_min_free_disk_mb "
            f"asks for {self.settings.min_free_disk_mb} to load version {version}\"; }}",
        ]
        if self.settings.source == "registry":
            lines.append(f"docker image inspect {image} >/dev/null 2>&1 || "
                         f"out=$(docker pull --quiet {image} 2>&1) || "
                         f"echo \"problem: version {version} cannot be pulled from the registry: "
                         "$(printf '%s' \"$out\" | tail -n 1)\"")
        artifact = self.artifact(version)
        if artifact is not None:
            lines.append(f"[ -f {quote(artifact.remote)} ] && "
                         f"echo \"archive: $(sha256sum < {quote(artifact.remote)} | cut -c1-64)\"")
        lines.append(f"docker image inspect {image} >/dev/null 2>&1 && echo 'image: present'")
        return "\n".join(lines) + "\ntrue"

    def parse_preflight(self, output: str) -> Preflight:
        lines = output.splitlines()
        problems = tuple(line.removeprefix("problem: ") for line in lines
                         if line.startswith("problem: "))
        archive = next((line.removeprefix("archive: ") for line in lines
                        if line.startswith("archive: ")), "")
        return Preflight(problems, "image: present" in lines, archive)

    def prepare(self, version: str) -> str:
        """The move program installed; the sent archive loaded (and removed again when it
        does not hold the version), or the image pulled."""
        image = quote(self.settings.image_of(version))
        install = install_program(self.settings, self.server_options)
        artifact = self.artifact(version)
        if artifact is None:
            return install + (f"docker image inspect {image} >/dev/null 2>&1 || "
                              f"docker pull --quiet {image} >/dev/null || exit 1")
        archive = quote(artifact.remote)
        return install + (
            f"if ! docker image inspect {image} >/dev/null 2>&1; then\n"
            f"  out=$(docker load --input {archive} 2>&1) || {{ rm -f {archive}; "
            "echo \"docker load refused the archive: $out\" >&2; exit 1; }\n"
            f"  docker image inspect {image} >/dev/null 2>&1 || {{ rm -f {archive}; "
            f"echo \"the archive {artifact.local.name} does not hold image "
            f"{self.settings.image_of(version)}; it holds: $out\" >&2; exit 1; }}\nfi")

    def migration(self, version: str) -> str | None:
        command = self.settings.migration_command
        if not command:
            return None
        return join("docker", "run", "--rm", "--pull", "never",
                    "--name", f"{self.name}-migration", *container_arguments(self.settings),
                    self.settings.image_of(version), *shlex.split(command))

    def move(self, instance: str, version: str) -> str:
        return detached(quote(self.layout.move_program), join(instance, version),
                        f"{self.name}-{instance}")

    def states(self) -> str:
        lines = []
        for instance in self.settings.instances:
            live = quote(self.layout.live(instance))
            lines.append(
                f"if [ -s {live} ]; then read -r port version < {live}; "
                f"code=$(curl -s -o /dev/null -w '%{{http_code}}' --max-time 2 "
                f"\"http://127.0.0.1:$port{self.settings.health_path}\") || code=000; "
                f"echo \"state {instance} $port $version $code\"; "
                f"else echo 'state {instance} - - -'; fi")
        return "\n".join(lines)

    def parse_states(self, output: str) -> list[InstanceState]:
        states = []
        for line in output.splitlines():
            parts = line.split()
            if len(parts) != 5 or parts[0] != "state":
                continue
            _, instance, port, version, code = parts
            if port == "-" or not port.isdigit():
                states.append(InstanceState(instance, 0, ""))
            else:
                states.append(InstanceState(instance, int(port), version, code.startswith("2")))
        return states

    def prune(self, keep: list[str]) -> str:
        """Archives and image tags of versions not kept; docker refuses to remove an image a
        container still runs, so a serving version is never lost."""
        kept = " ".join(keep)
        repository = quote(self.settings.image)
        releases = quote(self.layout.releases_dir)
        return (f"kept=' {kept} '\n"
                f"for file in {releases}/*.tar; do [ -e \"$file\" ] || continue; "
                "v=${file##*/}; v=${v%.tar}; case \"$kept\" in *\" $v \"*) ;; "
                "*) rm -f -- \"$file\" && echo \"pruned archive $v\";; esac; done\n"
                f"docker image ls --format '{{{{.Tag}}}}' {repository} | while read -r v; do "
                "case \"$kept\" in *\" $v \"*) continue;; esac; "
                f"docker image rm {repository}:\"$v\" >/dev/null 2>&1 && "
                "echo \"pruned image $v\"; done; true")

