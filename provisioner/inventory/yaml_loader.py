"""YAML loading that refuses what PyYAML silently accepts: duplicate keys.

Parsing uses libyaml (PyYAML's C parser) when it is there: about ten times faster than the pure
Python parser, which matters because role defaults are read on every run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class DuplicateKeyError(yaml.MarkedYAMLError):
    """A mapping names the same key twice; PyYAML would keep only the last one."""


try:
    from yaml import CSafeLoader as _SafeBase
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeBase  # type: ignore[assignment]


class _StrictLoader(_SafeBase):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)  # resolve `<<: *anchor` merge keys before looking for twins
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise DuplicateKeyError(
                    problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark
                )
            seen.add(key)
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


def load_yaml(path: Path) -> Any:
    """Parse a YAML file strictly; raises yaml.YAMLError (with a line mark) on bad input."""
    return load_yaml_text(path.read_text(encoding="utf-8"))


def load_yaml_text(text: str) -> Any:
    """Parse YAML text strictly, like load_yaml."""
    return yaml.load(text, Loader=_StrictLoader)
