"""User-facing errors: one clear sentence that says what is wrong and what to do."""

from __future__ import annotations

from collections.abc import Iterable


class UserError(ValueError):
    """A mistake in what the user asked for (bad spec, bad file, bad option).

    Subclasses ValueError so callers that follow the house rule (`except ValueError`) catch it;
    the CLI prints its message as one sentence and exits 2, the app shows it with `st.error`.
    """


def check_choice(what: str, value: str, valid: Iterable[str]) -> None:
    """Raise a UserError naming the valid choices when `value` is not one of them."""
    valid = tuple(valid)
    if value not in valid:
        raise UserError(f"Unknown {what} {value!r}; choose one of {', '.join(valid)}.")
