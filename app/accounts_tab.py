"""The Accounts tab (self-hosted studios): an admin makes accounts, grants and revokes roles and
resets passwords; everyone else can change their own password. Roles are never chosen at sign-in."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio_backend.services import ROLES, ServiceError

from .context import AppContext, UIError, refused


@dataclass
class AccountsTab:
    table: gr.Dataframe
    name: gr.Textbox
    password: gr.Textbox
    current: gr.Textbox
    role: gr.Dropdown
    create: gr.Button
    grant: gr.Button
    reset: gr.Button
    status: gr.Markdown


def account_rows(ctx: AppContext, us) -> list[list]:
    u = ctx.signed_in(us)
    if u is None or u.role != "admin":
        return []
    return [[a["name"], a["role"], "yes" if a["password"] else "no"] for a in ctx.studio.accounts.list(u)]


def _run(ctx: AppContext, us, action):
    try:
        return action(ctx.user(us))
    except (ServiceError, UIError) as e:
        raise refused(str(e))


def create_account(ctx: AppContext, us, name, password, role) -> str:
    u = _run(ctx, us, lambda admin: ctx.studio.accounts.create(admin, name, password, role))
    return f"Account **{u.name}** made with the {u.role} role."


def grant_role(ctx: AppContext, us, name, role) -> str:
    u = _run(ctx, us, lambda admin: ctx.studio.accounts.grant(admin, name, role))
    return f"**{u.name}** is now {u.role} (from their next request)."


def reset_password(ctx: AppContext, us, name, password, current=None) -> str:
    """An admin sets anyone else's password; a person their own, with their current one."""
    _run(ctx, us, lambda actor: ctx.studio.accounts.set_password(actor, (name or "").strip() or actor.name, password,
                                                                 current))
    return "Password changed; the account's sessions ended."


def build_accounts_tab() -> AccountsTab:
    gr.Markdown("Admins make accounts and give roles here (creator, annotator, admin); a role is never chosen "
                "at sign-in. Anyone may change their own password (leave the name empty and give the current one).")
    table = gr.Dataframe(headers=["account", "role", "password set"], interactive=False)
    with gr.Row():
        name = gr.Textbox(label="Account name", elem_id="account-name")
        password = gr.Textbox(label="New password", type="password", elem_id="account-password")
        current = gr.Textbox(label="Your current password (for your own)", type="password", elem_id="account-current")
        role = gr.Dropdown(list(ROLES), value="creator", label="Role", elem_id="account-role")
    with gr.Row():
        create = gr.Button("Make account", elem_id="account-create")
        grant = gr.Button("Give role", elem_id="account-grant")
        reset = gr.Button("Set password", elem_id="account-reset")
    status = gr.Markdown(elem_id="account-status")
    return AccountsTab(table, name, password, current, role, create, grant, reset, status)


def wire_accounts_tab(tab: AccountsTab, ctx: AppContext, user_state: gr.State) -> None:
    rows = lambda us: account_rows(ctx, us)  # noqa: E731
    tab.create.click(lambda us, n, p, r: create_account(ctx, us, n, p, r), [user_state, tab.name, tab.password, tab.role],
                     tab.status, api_name="account_create").then(rows, [user_state], tab.table)
    tab.grant.click(lambda us, n, r: grant_role(ctx, us, n, r), [user_state, tab.name, tab.role], tab.status,
                    api_name="account_grant").then(rows, [user_state], tab.table)
    tab.reset.click(lambda us, n, p, c: reset_password(ctx, us, n, p, c), [user_state, tab.name, tab.password, tab.current],
                    tab.status, api_name="account_password").then(rows, [user_state], tab.table)
