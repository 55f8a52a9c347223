"""The layers only import downward: the contracts of docs/ARCHITECTURE.md, checked on the source.

Each contract is one test named after it. The checker reads every module of provisioner/ and
roles/ with ``ast``, so an import inside a function or under ``if TYPE_CHECKING:`` counts like
one at the top, and so does ``importlib.import_module("...")`` with a literal name. A module also
imports whatever the project modules it imports import: a forbidden module reached that way is
reported with the chain that reaches it. The last tests run the checker on small bad packages
written to tmp_path, so it cannot pass by seeing nothing.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("provisioner", "roles")


# --- the checker --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    """One module named by an import statement (``from a import b, c`` names two)."""

    path: Path  # relative to the project root
    line: int
    statement: str  # as written, on one line
    target: str  # the dotted module it names

    def where(self) -> str:
        return f"{self.path}:{self.line}: `{self.statement}`"


@dataclass(frozen=True)
class Contract:
    """The modules under ``sources`` never import a module under ``forbidden`` (except those
    under ``allowed``), directly or, when ``indirect``, through other project modules."""

    rule: str
    sources: tuple[str, ...]
    forbidden: tuple[str, ...]
    allowed: tuple[str, ...] = ()
    indirect: bool = True

    def applies_to(self, module: str) -> bool:
        return under(module, self.sources)

    def forbids(self, module: str) -> bool:
        return under(module, self.forbidden) and not under(module, self.allowed)


def under(module: str, prefixes: Sequence[str]) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes)


def module_files(root: Path, packages: Sequence[str]) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages (a package is its
    ``__init__.py``)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def read_imports(root: Path, module: str, path: Path, source: str, tree: ast.Module,
                 known: set[str]) -> list[Import]:
    relative = path.relative_to(root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    lines = source.encode("utf-8").splitlines()  # ast's column offsets count UTF-8 bytes
    found = []
    for node in ast.walk(tree):
        targets = list(imported_modules(node, package, known))
        if targets and isinstance(node, ast.stmt | ast.expr):
            found += [Import(relative, node.lineno, written(lines, node), target)
                      for target in targets]
    return sorted(found, key=lambda item: (item.line, item.target))


def written(lines: Sequence[bytes], node: ast.stmt | ast.expr) -> str:
    """The node's source on one line (ast.get_source_segment splits the file on every call)."""
    end = node.end_lineno or node.lineno
    text = b"\n".join(lines[node.lineno - 1:end])
    cut = len(text) - len(lines[end - 1]) + (node.end_col_offset or len(lines[end - 1]))
    return " ".join(text[node.col_offset:cut].decode("utf-8").split())


def imported_modules(node: ast.AST, package: str, known: set[str]) -> Iterator[str]:
    """The modules an import statement, or an import_module("...") call, names."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        base = absolute_module(node.module, node.level, package)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            yield submodule if submodule in known else base
    elif isinstance(node, ast.Call) and call_name(node.func) in {"import_module", "__import__"} \
            and node.args and isinstance(node.args[0], ast.Constant) \
            and isinstance(node.args[0].value, str):
        yield node.args[0].value


def absolute_module(module: str | None, level: int, package: str) -> str:
    if level == 0:
        return module or ""
    parts = package.split(".")
    base = ".".join(parts[:len(parts) - level + 1])
    return f"{base}.{module}" if module else base


def call_name(function: ast.expr) -> str:
    if isinstance(function, ast.Name):
        return function.id
    return function.attr if isinstance(function, ast.Attribute) else ""


@dataclass(frozen=True)
class Project:
    """Every module of the checked packages and the imports each one makes."""

    root: Path
    files: dict[str, Path]
    trees: dict[str, ast.Module]
    imports: dict[str, list[Import]]

    @classmethod
    def read(cls, root: Path, packages: Sequence[str]) -> Project:
        files = module_files(root, packages)
        sources = {module: path.read_text(encoding="utf-8") for module, path in files.items()}
        trees = {module: ast.parse(sources[module], filename=str(path))
                 for module, path in files.items()}
        imports = {module: read_imports(root, module, path, sources[module], trees[module],
                                        set(files)) for module, path in files.items()}
        return cls(root, files, trees, imports)

    def run_by_importing(self, module: str) -> list[Import]:
        """The imports executed by importing ``module``: its own and its packages' __init__'s."""
        parts = module.split(".")
        chain = [".".join(parts[:end]) for end in range(1, len(parts) + 1)]
        return [item for name in chain for item in self.imports.get(name, [])]

    def chain_to_forbidden(self, start: str, contract: Contract) -> list[Import] | None:
        """The shortest chain of imports from project module ``start`` to a forbidden one."""
        queue: deque[tuple[str, list[Import]]] = deque([(start, [])])
        seen = {start}
        while queue:
            module, chain = queue.popleft()
            for item in self.run_by_importing(module):
                if contract.forbids(item.target):
                    return [*chain, item]
                if item.target in self.files and item.target not in seen \
                        and not contract.applies_to(item.target):  # reported on its own
                    seen.add(item.target)
                    queue.append((item.target, [*chain, item]))
        return None


def violations(project: Project, contract: Contract) -> list[str]:
    """One line per import that breaks the contract: file, line, the import, the rule."""
    found = []
    for module in sorted(filter(contract.applies_to, project.files)):
        for item in project.imports[module]:
            if contract.forbids(item.target):
                found.append(f"{item.where()} breaks \"{contract.rule}\": it imports "
                             f"{item.target}")
            elif contract.indirect and item.target in project.files \
                    and not contract.applies_to(item.target):
                chain = project.chain_to_forbidden(item.target, contract)
                if chain:
                    steps = "; ".join(step.where() for step in chain)
                    found.append(f"{item.where()} breaks \"{contract.rule}\": it leads to "
                                 f"{chain[-1].target} through {steps}")
    return found


@dataclass(frozen=True)
class NamingRule:
    """No string literal in the modules under ``sources`` (but not ``excluded``) names a role."""

    rule: str
    sources: tuple[str, ...]
    excluded: tuple[str, ...] = ()
    #: (module, literal) pairs where the word is the host's, not a role's, and why.
    not_roles: tuple[tuple[str, str, str], ...] = ()

    def applies_to(self, module: str) -> bool:
        return under(module, self.sources) and not under(module, self.excluded)

    def is_not_a_role(self, module: str, literal: str) -> bool:
        return any((module, literal) == (where, word) for where, word, _ in self.not_roles)


def roles_named(project: Project, naming: NamingRule, role_names: set[str]) -> list[str]:
    """String literals that name a role: its name, its module or its directory."""
    found = []
    for module in sorted(filter(naming.applies_to, project.files)):
        path = project.files[module]
        for node in ast.walk(project.trees[module]):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                    not naming.is_not_a_role(module, node.value):
                named = next((role for role in sorted(role_names)
                              if names_role(node.value, role)), None)
                if named is not None:
                    found.append(f"{path.relative_to(project.root)}:{node.lineno}: "
                                 f"{node.value!r} breaks \"{naming.rule}\": it "
                                 f"names the role {named}")
    return found


def names_role(text: str, role: str) -> bool:
    return text == role or under(text, [f"roles.{role}"]) or f"roles/{role}" in text


def role_names(root: Path) -> set[str]:
    return {path.parent.name for path in (root / "roles").glob("*/role.py")}


PRINTING_CALLS = {"print", "pprint"}
PRINTING_STREAMS = {"stdout", "stderr"}


def printing(project: Project, allowed: Sequence[str], rule: str) -> list[str]:
    """Where a module outside ``allowed`` calls print() or touches sys.stdout/sys.stderr."""
    found = []
    for module, path in sorted(project.files.items()):
        if under(module, allowed):
            continue
        for node in ast.walk(project.trees[module]):
            what = printed_by(node)
            if what:
                found.append(f"{path.relative_to(project.root)}:{getattr(node, 'lineno', 0)}: "
                             f"{what} breaks \"{rule}\"")
    return found


def printed_by(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
            and node.func.id in PRINTING_CALLS:
        return f"`{node.func.id}(...)`"
    if isinstance(node, ast.Attribute) and node.attr in PRINTING_STREAMS \
            and isinstance(node.value, ast.Name) and node.value.id == "sys":
        return f"`sys.{node.attr}`"
    if isinstance(node, ast.ImportFrom) and node.module == "sys" \
            and PRINTING_STREAMS & {alias.name for alias in node.names}:
        return "`from sys import ...` of a standard stream"
    return None


def assert_kept(found: list[str]) -> None:
    if found:
        pytest.fail("\n".join(found), pytrace=False)


# --- the contracts ------------------------------------------------------------------------------

#: The content API (step, change, host, commands, errors, login_keys, sql; facts/): what roles,
#: ops and specs import. Every module directly in provisioner/ (the command layer is the cli/
#: package) is held to its contract (local_files.py too), so a new one cannot escape the rules.
CONTENT_API = (*(f"provisioner.{path.stem}" for path in sorted((ROOT / "provisioner").glob("*.py"))
                 if path.stem not in {"__init__", "cli"}), "provisioner.facts")
RUN, TRANSPORT, OUTPUT = "provisioner.run", "provisioner.transport", "provisioner.output"

CONTENT_API_AND_OPS = Contract(
    "the content API and ops never import run/, transport/ or output/",
    (*CONTENT_API, "provisioner.ops"), (RUN, TRANSPORT, OUTPUT))
ROLES_STAY_ON_THE_CONTENT_API = Contract(
    "roles never import run/, transport/ or output/", ("roles",), (RUN, TRANSPORT, OUTPUT))
ROLES_NEVER_REACH_THE_HOST_THEMSELVES = Contract(
    "roles never import fabric, paramiko or subprocess (the engine owns the connection)",
    ("roles",), ("fabric", "paramiko", "subprocess"), indirect=False)
RUN_IMPORTS_NO_ROLE = Contract("run/ never imports a role", (RUN,), ("roles",))
RUN_IMPORTS_NO_OUTPUT = Contract("run/ never imports output/", (RUN,), (OUTPUT,))
OUTPUT_READS_ONLY_RESULTS = Contract(
    "output/ listens to events: of run/ it reads only run/results.py", (OUTPUT,), (RUN,),
    allowed=("provisioner.run.results",))
TRANSPORT_BELOW_RUN = Contract(
    "transport/ never imports run/ or output/", (TRANSPORT,), (RUN, OUTPUT))
DATA_PACKAGES_BELOW_ENGINE = Contract(
    "inventory/, secrets/ and facts/ never import run/, transport/, output/ or content/",
    ("provisioner.inventory", "provisioner.secrets", "provisioner.facts"),
    (RUN, TRANSPORT, OUTPUT, "provisioner.content"))
SANDBOX_BESIDE_THE_RUN = Contract(
    "sandbox/ never imports run/ or output/", ("provisioner.sandbox",), (RUN, OUTPUT))
DEPLOY_SHIPS_WHAT_A_ROLE_DESCRIBES = Contract(
    "deploy/ never imports a role, output/ or cli/ (a role's release comes as data)",
    ("provisioner.deploy",), ("roles", OUTPUT, "provisioner.cli"))


#: Everything in provisioner/ but ops/, whose modules are named after the programs they manage
#: (ufw is a program before it is a role), and sandbox/, whose demo inventory lists the roles
#: it applies as any inventory does.
ENGINE_KNOWS_NO_ROLE = NamingRule(
    "the engine knows no role by name", ("provisioner",),
    excluded=("provisioner.ops", "provisioner.sandbox"),
    not_roles=(("provisioner.facts", "docker",
                "systemd-detect-virt's word for a host that is a Docker container"),))

#: Who may print: the command layer (cli/ and the task collections tasks.py takes in) and the
#: output listeners; and the connection keeper, a program of its own whose stderr is keepers.log.
PRINTERS = ("provisioner.cli", "provisioner.tasks", OUTPUT, "provisioner.transport.keeper")
NOTHING_BELOW_CLI_PRINTS = "nothing below tasks.py and cli/ prints (output/ listens and prints)"


@pytest.fixture(scope="module")
def project() -> Project:
    return Project.read(ROOT, PACKAGES)


def test_the_content_api_and_ops_never_import_run_transport_or_output(project: Project) -> None:
    assert_kept(violations(project, CONTENT_API_AND_OPS))


def test_roles_never_import_run_transport_or_output(project: Project) -> None:
    assert_kept(violations(project, ROLES_STAY_ON_THE_CONTENT_API))


def test_roles_never_import_fabric_paramiko_or_subprocess(project: Project) -> None:
    assert_kept(violations(project, ROLES_NEVER_REACH_THE_HOST_THEMSELVES))


def test_run_never_imports_a_role(project: Project) -> None:
    assert_kept(violations(project, RUN_IMPORTS_NO_ROLE))


def test_run_never_imports_output(project: Project) -> None:
    assert_kept(violations(project, RUN_IMPORTS_NO_OUTPUT))


def test_output_reads_only_run_results_of_run(project: Project) -> None:
    assert_kept(violations(project, OUTPUT_READS_ONLY_RESULTS))


def test_transport_never_imports_run_or_output(project: Project) -> None:
    assert_kept(violations(project, TRANSPORT_BELOW_RUN))


def test_inventory_secrets_and_facts_never_import_run_transport_output_or_content(
        project: Project) -> None:
    assert_kept(violations(project, DATA_PACKAGES_BELOW_ENGINE))


def test_sandbox_never_imports_run_or_output(project: Project) -> None:
    assert_kept(violations(project, SANDBOX_BESIDE_THE_RUN))


def test_deploy_never_imports_a_role_output_or_cli(project: Project) -> None:
    assert_kept(violations(project, DEPLOY_SHIPS_WHAT_A_ROLE_DESCRIBES))


def test_the_engine_knows_no_role_by_name(project: Project) -> None:
    assert_kept(roles_named(project, ENGINE_KNOWS_NO_ROLE, role_names(ROOT)))


def test_nothing_below_tasks_and_cli_prints(project: Project) -> None:
    assert_kept(printing(project, PRINTERS, NOTHING_BELOW_CLI_PRINTS))


# --- the checker catches what it must -----------------------------------------------------------

def test_the_checker_reads_every_layer_of_the_project(project: Project) -> None:
    layers = {"provisioner.step", "provisioner.ops.files", "provisioner.run.engine",
              "provisioner.transport.connection", "provisioner.output.console",
              "provisioner.inventory.loader", "provisioner.sandbox.lifecycle", "roles.ufw.role"}
    assert layers <= set(project.files)
    assert all(project.imports[module] for module in layers)
    assert {"hardening", "ufw", "fail2ban"} <= role_names(ROOT)


BAD_PACKAGE = {
    "app/__init__.py": "",
    "app/run/__init__.py": "",
    "app/run/engine.py": '''\
"""Reaches output/ from inside a function."""


def finish():
    from app.output.console import show

    show()
''',
    "app/run/results.py": "from app.run import engine\n",
    "app/output/__init__.py": "",
    "app/output/console.py": '''\
from typing import TYPE_CHECKING

from app.run.results import engine

if TYPE_CHECKING:
    from app.transport import connection


def show():
    print("done")
''',
    "app/transport/__init__.py": "",
    "app/transport/connection.py":
        "import importlib\n\nimportlib.import_module('app.run.engine')\n",
    "app/ops/__init__.py": "",
    "app/ops/files.py": "from ..helpers import tool\n",
    "app/helpers/__init__.py": "",
    "app/helpers/tool.py": "import app.transport.connection\n",
    "app/roles_by_name.py": "FAVOURITE = 'hardening'\nPATH = 'roles/ufw/role.py'\n",
}


@pytest.fixture
def bad_project(tmp_path: Path) -> Project:
    for name, text in BAD_PACKAGE.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return Project.read(tmp_path, ["app"])


def test_the_checker_names_file_line_import_and_rule_of_a_lazy_import(
        bad_project: Project) -> None:
    contract = Contract("run/ never imports output/", ("app.run",), ("app.output",))
    assert violations(bad_project, contract) == [
        'app/run/engine.py:5: `from app.output.console import show` breaks "run/ never '
        'imports output/": it imports app.output.console']


def test_the_checker_counts_type_checking_imports(bad_project: Project) -> None:
    contract = Contract("output/ never imports transport/", ("app.output",), ("app.transport",))
    assert violations(bad_project, contract) == [
        'app/output/console.py:6: `from app.transport import connection` breaks "output/ never '
        'imports transport/": it imports app.transport.connection']


def test_the_checker_allows_only_the_exception_it_is_given(bad_project: Project) -> None:
    contract = Contract("output/ reads only run/results.py", ("app.output",), ("app.run",),
                        allowed=("app.run.results",))
    found = violations(bad_project, contract)
    assert 'app/output/console.py:3: `from app.run.results import engine` breaks "output/ reads ' \
        'only run/results.py": it leads to app.run.engine through app/run/results.py:1: ' \
        '`from app.run import engine`' in found
    assert not [line for line in found if line.endswith("it imports app.run.results")]


def test_the_checker_follows_relative_and_indirect_imports_and_shows_the_chain(
        bad_project: Project) -> None:
    contract = Contract("ops never import run/", ("app.ops",), ("app.run",))
    assert violations(bad_project, contract) == [
        'app/ops/files.py:1: `from ..helpers import tool` breaks "ops never import run/": it '
        'leads to app.run.engine through app/helpers/tool.py:1: `import app.transport.connection`;'
        " app/transport/connection.py:3: `importlib.import_module('app.run.engine')`"]


def test_the_checker_finds_a_role_named_in_a_string(bad_project: Project) -> None:
    naming = NamingRule("the engine knows no role by name", ("app.roles_by_name",))
    found = roles_named(bad_project, naming, {"hardening", "ufw"})
    assert found == [
        "app/roles_by_name.py:1: 'hardening' breaks \"the engine knows no role by name\": it "
        "names the role hardening",
        "app/roles_by_name.py:2: 'roles/ufw/role.py' breaks \"the engine knows no role by "
        "name\": it names the role ufw"]


def test_the_checker_finds_printing_outside_the_printers(bad_project: Project) -> None:
    assert printing(bad_project, ["app.run"], "only run/ prints") == [
        'app/output/console.py:10: `print(...)` breaks "only run/ prints"']
