"""Model spec schemes that higher layers add (`zoo:NAME`), so the engine never imports them.

A scheme maps the rest of a spec to a spec the engine loads itself (usually `local-dir:PATH`), the
way timm's `@register_model` lets `create_model` find architectures it does not import. The zoo
registers `zoo:` when the package is imported.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import UserError

Resolver = Callable[[str], str]

_SCHEMES: dict[str, Resolver] = {}


def register_scheme(name: str, resolve: Resolver) -> None:
    """Make `name:REST` specs load as `resolve(REST)` (a spec of the engine's own kinds)."""
    if not name.isidentifier():
        raise ValueError(f"A spec scheme must be an identifier, got {name!r}.")
    _SCHEMES[name] = resolve


def registered_schemes() -> tuple[str, ...]:
    return tuple(sorted(_SCHEMES))


def resolve_scheme(spec: str) -> str | None:
    """The engine-level spec a registered scheme maps `spec` to; None when no scheme claims it."""
    name, sep, rest = spec.partition(":")
    if not sep or name not in _SCHEMES:
        return None
    resolved = _SCHEMES[name](rest)
    if resolve_scheme(resolved) is not None:
        raise UserError(f"The {name}: scheme resolved {spec!r} to another registered scheme ({resolved!r}).")
    return resolved
