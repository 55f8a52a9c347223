"""The example inventories are real: every host passes every check a run makes before contact."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from provisioner.content.roles import PROJECT_ROOT, available_roles
from provisioner.inventory.loader import load_inventory
from provisioner.inventory.view import InventoryView
from provisioner.run.engine import RunOptions, prepare

EXAMPLES = sorted((PROJECT_ROOT / "inventories").glob("*.yml"))
#: Controller-side secret files whose content has a shape (a key); every other file an example
#: references gets a stand-in value, as a user would create it by the inventory's comments.
SECRET_FILES = {"keys/db1_backup": "-----BEGIN OPENSSH PRIVATE KEY-----\nexample\n"
                                   "-----END OPENSSH PRIVATE KEY-----\n"}
FILE_REFERENCE = re.compile(r"\{secret:\s*file:([^}\s]+)\s*\}")


def referenced_files(example: Path) -> dict[str, str]:
    """Each ``{secret: file:PATH}`` the example names, with what a user would put in it."""
    names = FILE_REFERENCE.findall(example.read_text())
    return {name: SECRET_FILES.get(name, f"stand-in value of {name}\n") for name in names}


@pytest.mark.parametrize("example", [p for p in EXAMPLES if p.name != "sandbox.yml"],
                         ids=lambda path: path.name)
def test_every_host_of_the_example_passes_the_checks_before_contact(example: Path,
                                                                    tmp_path: Path) -> None:
    shutil.copy(example, tmp_path / example.name)
    for name, content in referenced_files(example).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    inventory = load_inventory(tmp_path / example.name, known_roles=list(available_roles()))

    jobs = prepare(list(inventory.hosts.values()), RunOptions(), InventoryView.of(inventory))

    assert {job.config.name for job in jobs} == set(inventory.hosts)
    assert all(job.roles for job in jobs)
