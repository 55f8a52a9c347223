"""Host: the runtime handle that roles, operations and specs receive for one host in one run."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from provisioner.content.templates import render_template, template_variables
from provisioner.facts import Facts
from provisioner.inventory.hosts import HostConfig
from provisioner.inventory.view import InventoryView
from provisioner.secrets.values import Secret, reveal_all


class Host:
    """One host as a role sees it: its config, merged variables, facts (gathered on first use),
    the other hosts of the inventory (``inventory``) and, bound to one role, its templates.

    Roles only *describe* steps through this handle; the engine owns the connection, so a role can
    neither run a command nor change anything behind the engine's back (check mode stays honest).
    """

    def __init__(self, config: HostConfig, variables: Mapping[str, Any],
                 gather_facts: Callable[[], Facts], *, check: bool = False,
                 show_diff: bool = False, inventory: InventoryView | None = None) -> None:
        self.config = config
        self.name = config.name
        self._secrets = secrets_in(variables)
        #: The variables with secrets as their values: whatever a role builds from them goes to
        #: the host, which must get the real value (an f-string of a Secret gives its mask, and
        #: wrote "URIs: ***" into an apt source). What the walk shows is masked again (secrets).
        self.vars: Mapping[str, Any] = reveal_all(variables)
        self.check = check
        self.show_diff = show_diff
        self.inventory = inventory or InventoryView.of_hosts([config])
        self._facts = _FactsSource(gather_facts)
        self._template_dir: Path | None = None

    def for_role(self, template_dir: Path) -> Host:
        """This host bound to one role's templates; facts stay shared with every other binding,
        so they are still gathered at most once."""
        bound = copy.copy(self)
        bound._template_dir = template_dir
        return bound

    @property
    def facts(self) -> Facts:
        """Facts gathered once, on first use: a role that needs none costs no round trip.

        While facts are assumed (assume_facts), those are answered instead and nothing is
        gathered."""
        return self._facts.read()

    @property
    def facts_gathered(self) -> bool:
        return self._facts.gathered is not None

    @property
    def assumed_facts_read(self) -> bool:
        """True once something read the assumed facts (see assume_facts) instead of real ones."""
        return self._facts.assumed_read

    def assume_facts(self, facts: Facts) -> None:
        """Answer ``facts`` with these (the host's facts from its last run) until settle_facts.

        Lets the engine render steps before the host has said what it is; whoever does so must
        compare them with the real facts (settle_facts) before anything is decided."""
        self._facts.assumed = facts

    def settle_facts(self, actual: Facts | None) -> bool:
        """End the assumption with the host's real facts (None: gather them when next read).

        True when the assumed facts were never read or equal ``actual``: whatever was built
        from them stands."""
        return self._facts.settle(actual)

    def render(self, template: str, **extra: Any) -> str:
        """Render one of the current role's templates with the host's variables and facts."""
        if self._template_dir is None:
            raise RuntimeError("render() called on a Host not bound to a role (for_role)")
        variables = {**self.vars, "host_name": self.name, **extra}
        if "facts" in template_variables(self._template_dir).get(template, ()):
            variables["facts"] = self.facts
        return render_template(self._template_dir, template, variables)

    def template_reads(self, template: str) -> frozenset[str]:
        """The top-level names one of the current role's templates reads."""
        if self._template_dir is None:
            raise RuntimeError("template_reads() called on a Host not bound to a role")
        return template_variables(self._template_dir).get(template, frozenset())

    @property
    def secrets(self) -> tuple[Secret, ...]:
        """Every secret value this host's variables hold, for redaction of what is shown."""
        return self._secrets


class _FactsSource:
    """A host's facts for every binding of its Host: gathered once, or assumed for a while."""

    def __init__(self, gather: Callable[[], Facts]) -> None:
        self._gather = gather
        self.gathered: Facts | None = None
        self.assumed: Facts | None = None
        self.assumed_read = False

    def read(self) -> Facts:
        if self.gathered is None:
            if self.assumed is not None:
                self.assumed_read = True
                return self.assumed
            self.gathered = self._gather()
        return self.gathered

    def settle(self, actual: Facts | None) -> bool:
        stands = not self.assumed_read or self.assumed == actual
        self.assumed, self.assumed_read = None, False
        if actual is not None:
            self.gathered = actual
        return stands


def secrets_in(value: Any) -> tuple[Secret, ...]:
    """Every Secret inside a value (lists and mappings too)."""
    found: list[Secret] = []
    _collect_secrets(value, found)
    return tuple(found)


def _collect_secrets(value: Any, found: list[Secret]) -> None:
    if isinstance(value, Secret):
        found.append(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _collect_secrets(item, found)
    elif isinstance(value, list | tuple):
        for item in value:
            _collect_secrets(item, found)
