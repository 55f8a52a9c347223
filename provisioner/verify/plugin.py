"""pytest plugin for role specs: the ``role_vars`` fixture holds the host's merged variables."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest


@pytest.fixture(scope="session")
def role_vars() -> dict[str, Any]:
    """The variables the role was applied with (defaults < inventory < CLI), secrets revealed."""
    path = os.environ.get("PROVISIONER_VERIFY_VARS")
    if not path:
        pytest.skip("role specs run through `invoke verify`, which provides the host's variables")
    with open(path, encoding="utf-8") as stream:
        data: dict[str, Any] = json.load(stream)
    return data
