"""User-facing errors: one clear sentence that says what is wrong and what to do."""


class UserError(ValueError):
    """A mistake in what the user asked for (bad spec, bad file, bad option).

    Subclasses ValueError so callers that follow the house rule (`except ValueError`) catch it;
    the CLI prints its message as one sentence and exits 2, the app shows it with `st.error`.
    """
