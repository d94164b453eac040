"""Who is logged in, as the UI sees it: the Gradio event's user becomes Hearth's
`current_user()` (so every store, chat and extension call in a handler is that user's),
the admin-only tabs and switches are hidden from other users, and a Log out link."""
from __future__ import annotations

import gradio as gr
from gradio.context import LocalContext

from webui.accounts.current import add_lookup
from webui.errors import UserError
from webui.hearth import Hearth


def event_user() -> str | None:
    """The logged-in user of the Gradio event being handled (None: no login, or no event)."""
    request = LocalContext.request.get(None)
    return getattr(request, "username", None) or None


def use_event_users() -> None:
    add_lookup(event_user)


def admin_refusal(hearth: Hearth, what: str) -> UserError | None:
    """The one-line refusal for a non-admin, or None: a hidden control is not enough,
    since a client can send any event the page defines."""
    try:
        hearth.require_admin(what)
    except UserError as e:
        return e
    return None


def header(hearth: Hearth) -> gr.Markdown | None:
    """'Logged in as NAME · Log out' above the tabs, when Hearth has logins."""
    if not hearth.accounts.login_required:
        return None
    with gr.Row(equal_height=True):
        who = gr.Markdown("", elem_id="account-user")
        gr.Button("Log out", link="/logout", size="sm", scale=0, min_width=100, elem_id="account-logout")
    return who


# Gradio 6 does not hide a tab's button when an event sets the tab invisible, so
# the page hides an admin tab's button itself (its elem_id + "-button"), by a class
# on <body> that each page load sets from the user's role.
NOT_ADMIN_CLASS = "hearth-not-admin"
ADMIN_TAB_IDS = ("tab-model", "tab-download", "tab-advisor")
CSS = ", ".join(f".{NOT_ADMIN_CLASS} #{tab}-button" for tab in ADMIN_TAB_IDS) + " { display: none !important; }"
_MARK_ROLE = f"(role) => {{ document.body.classList.toggle('{NOT_ADMIN_CLASS}', role !== 'admin'); }}"


def wire_roles(hearth: Hearth, demo: gr.Blocks, who: gr.Markdown | None, admin_tabs: list, admin_controls: list) -> None:
    """On each page load: the user's name, and the admin-only tabs (elem_ids
    ADMIN_TAB_IDS) and controls shown to admins only."""
    role = gr.Textbox(visible=False, elem_id="account-role")
    # A control built non-interactive (an extension that cannot be loaded) stays so for admins.
    usable = [control.interactive is not False for control in admin_controls]

    def on_load():
        admin = hearth.is_admin()
        name = event_user()
        shown = [f"Logged in as **{name}**{' (admin)' if admin else ''}"] if who is not None else []
        return (shown + ["admin" if admin else "user"] + [gr.update(visible=admin) for _ in admin_tabs]
                + [gr.update(interactive=admin and ok) for ok in usable])

    outputs = ([who] if who is not None else []) + [role] + list(admin_tabs) + list(admin_controls)
    demo.load(on_load, None, outputs, queue=False).then(None, [role], None, js=_MARK_ROLE, queue=False)
