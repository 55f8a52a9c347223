"""Jinja2 rendering of role templates: strict about undefined names, checked before connecting."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta

from provisioner.errors import RoleError
from provisioner.secrets.values import Secret, reveal_all

#: Names every template may use without the inventory defining them.
BUILTIN_NAMES = frozenset({"facts", "host_name", "managed_banner", "range", "loop", "lookup"})

MANAGED_BANNER = "Managed by provisioner; local edits are overwritten on the next run."


@cache
def _environment(template_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir)), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False,
    )
    env.filters["reveal"] = lambda value: value.reveal() if isinstance(value, Secret) else value
    return env


def render_template(template_dir: Path, name: str, variables: Mapping[str, Any]) -> str:
    """Render ``name`` from a role's templates directory; an undefined variable is a RoleError.

    Secrets render as their real value: the file is for the host. The walk masks them in every
    diff and message it shows (a masked value written to the host was silent corruption)."""
    env = _environment(template_dir)
    context = {"managed_banner": MANAGED_BANNER, **reveal_all(dict(variables))}
    try:
        return env.get_template(name).render(context)
    except jinja2.UndefinedError as error:
        raise RoleError(f"Template {template_dir / name} uses an undefined variable: {error}. "
                        "Define it in the inventory (defaults, group or host vars) or in the "
                        "role's defaults.yml.") from None
    except jinja2.TemplateNotFound:
        raise RoleError(f"Template {template_dir / name} does not exist.") from None
    except jinja2.TemplateError as error:  # a filter it lacks, a syntax error
        raise RoleError(f"Template {template_dir / name} cannot be rendered: {error}. Fix the "
                        "template (Jinja2's built-in filters and tests only).") from None


@cache
def template_variables(template_dir: Path) -> dict[str, frozenset[str]]:
    """Every template in a directory mapped to the top-level names it reads.

    Used to refuse an undefined variable before any host is contacted, rather than half-way
    through a run.
    """
    env = _environment(template_dir)
    names: dict[str, frozenset[str]] = {}
    for name in env.list_templates(extensions=["j2"]):
        source = env.loader.get_source(env, name)[0]  # type: ignore[union-attr]
        try:
            names[name] = frozenset(jinja2.meta.find_undeclared_variables(env.parse(source)))
        except jinja2.TemplateError as error:
            number = getattr(error, "lineno", None)
            line = f" (line {number})" if number else ""
            raise RoleError(f"Template {template_dir / name}{line} cannot be read: {error}. "
                            "Fix the template (Jinja2's built-in filters and tests only).") \
                from None
    return names
