"""A value checked against a pattern is checked whole.

Python's ``$`` also matches before a trailing newline, so ``re.match(r"^name$", "name\\n")``
succeeds: a server name, a header value or a user name from a YAML block scalar passed every
check with its line break and landed in nginx's headers (a breaker's finding) or a config
file. ``fullmatch`` has no such exception; this test keeps every pattern written to be whole
(one that ends in ``$``) from being used with ``match`` or ``search`` again.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from provisioner.content.roles import PROJECT_ROOT

SOURCES = sorted([*(PROJECT_ROOT / "provisioner").rglob("*.py"),
                  *(PROJECT_ROOT / "roles").rglob("*.py")])


def whole_patterns(tree: ast.Module) -> set[str]:
    """Names bound at module level to re.compile of a literal ending in '$'."""
    names = set()
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
            call, targets = node.value, node.targets if isinstance(node, ast.Assign) \
                else [node.target]
            if isinstance(call.func, ast.Attribute) and call.func.attr == "compile" and \
                    call.args and isinstance(call.args[0], ast.Constant) and \
                    str(call.args[0].value).endswith("$"):
                names |= {target.id for target in targets if isinstance(target, ast.Name)}
    return names


def partial_uses(path: Path, root: Path = PROJECT_ROOT) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    patterns = whole_patterns(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in ("match", "search"):
            target = node.func.value
            whole_literal = target.id == "re" and node.args and \
                isinstance(node.args[0], ast.Constant) and \
                str(node.args[0].value).endswith("$") if isinstance(target, ast.Name) else False
            if (isinstance(target, ast.Name) and target.id in patterns) or whole_literal:
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_no_whole_value_pattern_is_used_with_match_or_search() -> None:
    found = [place for path in SOURCES for place in partial_uses(path)]
    assert found == [], "use fullmatch: " + ", ".join(found)


@pytest.mark.parametrize(("source", "line"), [
    ('import re\nNAME = re.compile(r"^[a-z]+$")\ndef bad(v):\n    return NAME.match(v)\n', 4),
    ('import re\ndef bad(v):\n    return re.match(r"^[a-z]+$", v)\n', 3),
])
def test_the_check_finds_a_partial_use(tmp_path: Path, source: str, line: int) -> None:
    module = tmp_path / "module.py"
    module.write_text(source, encoding="utf-8")
    assert partial_uses(module, tmp_path) == [f"module.py:{line}"]


def test_the_check_lets_fullmatch_and_open_ended_patterns_be(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text('import re\nWHOLE = re.compile(r"^[a-z]+$")\nHEAD = re.compile(r"^key=")\n'
                      'def ok(v):\n    return WHOLE.fullmatch(v) or HEAD.match(v)\n',
                      encoding="utf-8")
    assert partial_uses(module, tmp_path) == []
