"""The one-line notice a tab shows when something the user asked for did not happen:
the UI face's display of a UserError (the API's is webui/api/errors.py)."""
from __future__ import annotations

from webui.errors import ErrorKind, UserError

WARNING = "⚠️"


def notice(problem: Exception | str, lead: str = "") -> str:
    """"⚠️ <lead><one line>"; `lead` says what was refused ("Not imported: ")."""
    text = " ".join(str(problem).split())
    if isinstance(problem, UserError) and problem.kind is ErrorKind.INTERNAL:
        # The message names an exception, which means nothing to the user by itself.
        text += " (a bug in Hearth or its backend; the server log has the details)"
    return f"{WARNING} {lead}{text}"
