"""The record of one sandbox machine, shared by every module and handed to callers."""

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Machine:
    """A booted sandbox machine: where to reach it and what to stop when it goes.

    `pid` is the systemd-nspawn process on the host (stopping it stops the machine); `root` is the
    machine's root filesystem as mounted on the host; `variant` names the image it was made from
    (see image_recipe.VARIANT_PACKAGES).
    """

    name: str
    address: str
    suite: str
    pid: int
    root: Path
    variant: str = "standard"
