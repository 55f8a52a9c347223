"""Every data-tier mistake the issue lists is refused before any host is contacted, in one
message naming what is wrong: the run's own checks (cli.select_jobs, what provision does before
it logs in) against a db host and an api group at TEST-NET addresses nothing answers."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from provisioner import cli
from provisioner.errors import ProvisionerError
from provisioner.run.engine import RunOptions

GOOD: dict[str, Any] = {
    "defaults": {"user": "admin", "ssh": {"identity_file": "key"}},
    "groups": {"api": {"roles": ["ufw"]},
               "db": {"roles": ["ufw", "postgres", "pgbouncer", "backups"], "vars": {
                   "host_secrets": {"db_password": {"kind": "password", "length": 32}},
                   "postgres_roles": [{"name": "app", "password": {"secret": "host:db_password"}}],
                   "postgres_databases": [{"name": "app", "owner": "app"}],
                   "postgres_remote_groups": ["api"],
                   "pgbouncer_remote_groups": ["api"],
                   "ufw_rules": [{"port": 5432, "proto": "tcp", "from_group": "api"},
                                 {"port": 6432, "proto": "tcp", "from_group": "api"}]}}},
    "hosts": {"db1": {"address": "192.0.2.20", "groups": ["db"]},
              "api1": {"address": "192.0.2.10", "groups": ["api"]}},
}


def jobs_for(tmp_path: Path, document: dict[str, Any]) -> int:
    (tmp_path / "key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"
                                  "-----END OPENSSH PRIVATE KEY-----\n")
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(document))
    return len(cli.select_jobs(cli.load(str(path)), "", "", RunOptions()))


def with_db_vars(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(GOOD)
    document["groups"]["db"]["vars"].update(changes)
    return document


def test_the_good_inventory_passes(tmp_path: Path) -> None:
    assert jobs_for(tmp_path, GOOD) == 2


@pytest.mark.parametrize(("changes", "message"), [
    ({"postgres_memory_share": 0}, "postgres_memory_share"),
    ({"postgres_memory_share": 1.5}, "postgres_memory_share"),
    ({"postgres_workload": "desktop"}, "postgres_workload"),
    ({"postgres_databases": [{"name": "App-DB", "owner": "app"}]}, "App-DB"),
    ({"postgres_roles": [{"name": "app\"; DROP", "password": {"secret": "host:db_password"}}]},
     "postgres_roles"),
    ({"postgres_remote_groups": ["apii"],
      "ufw_rules": [{"port": 5432, "proto": "tcp", "from_group": "apii"},
                    {"port": 6432, "proto": "tcp", "from_group": "api"}]},
     "'apii' is not a group"),
    ({"pgbouncer_remote_groups": ["web"]}, "'web' is not a group of the inventory"),
    ({"ufw_rules": [{"port": 5432, "proto": "tcp", "from_group": "api"}]},
     "add {port: 6432, proto: tcp, from_group: api}"),
    ({"postgres_roles": [{"name": "app", "password": "hunter2-in-the-inventory"}]},
     "host secret"),
    ({"postgres_roles": [{"name": "postgres", "password": {"secret": "host:db_password"}}]},
     "postgres"),
    ({"postgres_databases": [{"name": "app", "owner": "nobody"}]}, "nobody"),
    ({"backups_offhost": {"host": "api1", "private_key": {"secret": "file:key"}}},
     "does not have the backup_target role"),
    ({"ufw_rules": [{"port": 6432, "proto": "tcp", "from_group": "api"}]}, "5432"),
    ({"backups_schedule": "25:00"}, "backups_schedule"),
    ({"backups_schedule": "every day"}, "backups_schedule"),
    ({"postgres_roles": [{"name": "app", "password": {"secret": "host:db_pasword"}}]},
     "host secret 'db_pasword' is used but host 'db1' does not declare it"),
])
def test_a_mistake_is_refused_before_contact_naming_it(tmp_path: Path, changes: dict[str, Any],
                                                      message: str) -> None:
    with pytest.raises(ProvisionerError) as refused:
        jobs_for(tmp_path, with_db_vars(**changes))

    assert message in str(refused.value)
    assert "\n" not in str(refused.value).strip()


@pytest.mark.parametrize("directory", ["/etc", "/home/admin", "/etc/provisioner/secrets", "/tmp",
                                       "/root", "/var/backups", "/var/lib/postgresql"])
def test_a_dump_directory_the_role_would_take_from_the_system_is_refused(
        tmp_path: Path, directory: str) -> None:
    with pytest.raises(ProvisionerError, match="never a system directory or a home"):
        jobs_for(tmp_path, with_db_vars(backups_directory=directory))



def test_an_unquoted_time_is_read_back_as_the_time_it_was(tmp_path: Path) -> None:
    """YAML 1.1 reads `backups_schedule: 3:30` as 210 (base 60): the message says to quote it,
    in the user's own words, not only that a number is not a string."""
    (tmp_path / "key").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nx\n"
                                  "-----END OPENSSH PRIVATE KEY-----\n")
    path = tmp_path / "inventory.yml"
    text = yaml.safe_dump(GOOD, sort_keys=False)
    path.write_text(text.replace("      host_secrets:", "      backups_schedule: 3:30\n"
                                 "      host_secrets:", 1))

    with pytest.raises(ProvisionerError) as caught:
        cli.select_jobs(cli.load(str(path)), "", "", RunOptions())

    assert "groups.db.vars.backups_schedule" in str(caught.value)
    assert 'write it quoted, backups_schedule: "03:30"' in str(caught.value)


def test_an_unquoted_time_past_the_day_is_not_answered_with_itself_quoted() -> None:
    from provisioner.content.variables import unquoted_time_hint

    hint = unquoted_time_hint("backups_schedule", "02:00", 1440)

    assert "24:00, past a day's last minute" in hint and '"24:00"' not in hint
    assert unquoted_time_hint("backups_schedule", "02:00", 150).endswith('"02:30".')
    assert unquoted_time_hint("backups_schedule", "daily", 150) == ""


def test_a_backup_host_that_does_not_list_the_db_host_is_refused(tmp_path: Path) -> None:
    document = with_db_vars(backups_offhost={"host": "backup1",
                                             "private_key": {"secret": "file:key"}})
    document["hosts"]["backup1"] = {"address": "192.0.2.30", "roles": ["backup_target"],
                                    "vars": {"backup_target_clients": [
                                        {"host": "api1", "public_key": PUBLIC_KEY}]}}

    with pytest.raises(ProvisionerError, match=r"do not list db1: add \{host: db1"):
        jobs_for(tmp_path, document)

    document["hosts"]["backup1"]["vars"]["backup_target_clients"][0]["host"] = "db1"
    assert jobs_for(tmp_path, document) == 3


PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleBackupKey000000000000000000000000 db1"
