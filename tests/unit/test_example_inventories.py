"""The example inventories are real: every host passes every check a run makes before contact."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from provisioner.content.roles import PROJECT_ROOT, available_roles
from provisioner.inventory.loader import load_inventory
from provisioner.inventory.view import InventoryView
from provisioner.run.engine import RunOptions, prepare

EXAMPLES = sorted((PROJECT_ROOT / "inventories").glob("*.yml"))
#: Controller-side secret files the examples reference, as a user would create them.
SECRET_FILES = {"keys/db1_backup": "-----BEGIN OPENSSH PRIVATE KEY-----\nexample\n"
                                   "-----END OPENSSH PRIVATE KEY-----\n"}


@pytest.mark.parametrize("example", [p for p in EXAMPLES if p.name != "sandbox.yml"],
                         ids=lambda path: path.name)
def test_every_host_of_the_example_passes_the_checks_before_contact(example: Path,
                                                                    tmp_path: Path) -> None:
    shutil.copy(example, tmp_path / example.name)
    for name, content in SECRET_FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    inventory = load_inventory(tmp_path / example.name, known_roles=list(available_roles()))

    jobs = prepare(list(inventory.hosts.values()), RunOptions(), InventoryView.of(inventory))

    assert {job.config.name for job in jobs} == set(inventory.hosts)
    assert all(job.roles for job in jobs)
