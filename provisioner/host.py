"""Host: the runtime handle that roles, operations and specs receive for one host in one run."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from provisioner.content.templates import render_template, template_variables
from provisioner.facts import Facts
from provisioner.inventory.hosts import HostConfig
from provisioner.secrets.values import Secret, reveal_all


class Host:
    """One host as a role sees it: its config, merged variables, facts (gathered on first use).

    Roles only *describe* steps through this handle; the engine owns the connection, so a role can
    neither run a command nor change anything behind the engine's back (check mode stays honest).
    """

    def __init__(self, config: HostConfig, variables: Mapping[str, Any],
                 gather_facts: Callable[[], Facts], *, check: bool = False,
                 show_diff: bool = False) -> None:
        self.config = config
        self.name = config.name
        self._secrets = secrets_in(variables)
        #: The variables with secrets as their values: whatever a role builds from them goes to
        #: the host, which must get the real value (an f-string of a Secret gives its mask, and
        #: wrote "URIs: ***" into an apt source). What the walk shows is masked again (secrets).
        self.vars: Mapping[str, Any] = reveal_all(variables)
        self.check = check
        self.show_diff = show_diff
        self.template_dir: Path | None = None
        self._gather_facts = gather_facts
        self._facts: Facts | None = None
        self._assumed: Facts | None = None
        #: True once something read the assumed facts (see assume_facts) instead of real ones.
        self.assumed_facts_read = False

    @property
    def facts(self) -> Facts:
        """Facts gathered once, on first use: a role that needs none costs no round trip.

        While facts are assumed (assume_facts), those are answered instead and nothing is
        gathered."""
        if self._facts is None:
            if self._assumed is not None:
                self.assumed_facts_read = True
                return self._assumed
            self._facts = self._gather_facts()
        return self._facts

    @property
    def facts_gathered(self) -> bool:
        return self._facts is not None

    def assume_facts(self, facts: Facts) -> None:
        """Answer ``facts`` with these (the host's facts from its last run) until settle_facts.

        Lets the engine render steps before the host has said what it is; whoever does so must
        compare them with the real facts (settle_facts) before anything is decided."""
        self._assumed = facts

    def settle_facts(self, actual: Facts | None) -> bool:
        """End the assumption with the host's real facts (None: gather them when next read).

        True when the assumed facts were never read or equal ``actual``: whatever was built
        from them stands."""
        stands = not self.assumed_facts_read or self._assumed == actual
        self._assumed, self.assumed_facts_read = None, False
        if actual is not None:
            self._facts = actual
        return stands

    def render(self, template: str, **extra: Any) -> str:
        """Render one of the current role's templates with the host's variables and facts."""
        if self.template_dir is None:
            raise RuntimeError("render() called outside a role")
        variables = {**self.vars, "host_name": self.name, **extra}
        if "facts" in template_variables(self.template_dir).get(template, ()):
            variables["facts"] = self.facts
        return render_template(self.template_dir, template, variables)

    @property
    def secrets(self) -> tuple[Secret, ...]:
        """Every secret value this host's variables hold, for redaction of what is shown."""
        return self._secrets


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
