"""The Subjects tab: the subject library. Create a subject from several views, rename, delete,
and insert `@Name` into the Create tab's prompt."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from studio_backend.media import MediaError
from studio_backend.services import ServiceError

from .context import AppContext, UIError, check_reference, refused


def _characters_note() -> str:
    from studio_backend.characters import builtin_names, describe

    return ("**Built in:** the world's characters need no upload — name them in a prompt: "
            + ", ".join(f"`@{n}` ({describe(n)})" for n in builtin_names()[:12])
            + ". A subject of yours with the same name takes its place.")


CHARACTERS_NOTE = _characters_note()


@dataclass
class SubjectsTab:
    name: gr.Textbox
    views: gr.File
    create: gr.Button
    gallery: gr.Gallery
    pick: gr.Dropdown
    new_name: gr.Textbox
    rename: gr.Button
    delete: gr.Button
    insert: gr.Button
    status: gr.Markdown


def create_subject(ctx: AppContext, user_state, name: str, files) -> str:
    user = ctx.user(user_state)
    try:
        ctx.studio.subjects.check_name((name or "").strip())
        uploads = [(open(f, "rb").read(), str(f).rsplit("/", 1)[-1]) for f in (files or [])]
        for k, (data, label) in enumerate(uploads, 1):  # every view checked before any is stored
            check_reference(*ctx.studio.media.image_size(data, label), f"view {k} ({label})")
        infos = [ctx.studio.media.put_image_bytes(data, label) for data, label in uploads]
        s = ctx.studio.subjects.create(user, ctx.project(user), (name or "").strip(), infos)
    except (MediaError, ServiceError) as e:
        raise UIError(str(e)) from e
    return f"Created @{s.name} with {len(s.image_ids)} view(s)."


def library(ctx: AppContext, user_state) -> tuple[list, list[str]]:
    user = ctx.user(user_state)
    if user.role == "annotator":
        return [], []
    subs = ctx.studio.subjects.list(user, ctx.project(user))
    gallery = [(ctx.image_path(i), f"@{s.name} · view {k + 1}") for s in subs for k, i in enumerate(s.image_ids)]
    return gallery, [s.name for s in subs]


def _by_name(ctx, user, name):
    for s in ctx.studio.subjects.list(user, ctx.project(user)):
        if s.name == name:
            return s
    raise UIError(f"pick a subject first (no @{name} in your library)")


def rename_subject(ctx: AppContext, user_state, name: str, new_name: str) -> str:
    user = ctx.user(user_state)
    try:
        s = ctx.studio.subjects.rename(user, _by_name(ctx, user, name).id, (new_name or "").strip())
    except ServiceError as e:
        raise UIError(str(e)) from e
    return f"Renamed @{name} to @{s.name}. Prompts that still say @{name} will be refused until you update them."


def delete_subject(ctx: AppContext, user_state, name: str) -> str:
    user = ctx.user(user_state)
    try:
        ctx.studio.subjects.delete(user, _by_name(ctx, user, name).id)
    except ServiceError as e:
        raise UIError(str(e)) from e
    return f"Deleted @{name}."


def build_subjects_tab() -> SubjectsTab:
    with gr.Row():
        with gr.Column():
            name = gr.Textbox(label="Name (used as @Name in prompts)", placeholder="Tigo", elem_id="subject-name")
            views = gr.File(label="Views of the subject (1 to 8 images)", file_count="multiple", file_types=["image"],
                            type="filepath", elem_id="subject-views")
            create = gr.Button("Create subject", variant="primary", elem_id="subject-create")
            status = gr.Markdown(elem_id="subject-status")
        with gr.Column():
            pick = gr.Dropdown(label="Subject", choices=[])
            new_name = gr.Textbox(label="New name")
            with gr.Row():
                rename = gr.Button("Rename")
                delete = gr.Button("Delete", variant="stop")
                insert = gr.Button("Insert into prompt")
    gallery = gr.Gallery(label="Library", columns=6, height=260, allow_preview=False, elem_id="subject-library",
                         elem_classes=["omni-grid"])
    gr.Markdown(CHARACTERS_NOTE)
    return SubjectsTab(name, views, create, gallery, pick, new_name, rename, delete, insert, status)


def wire_subjects_tab(tab: SubjectsTab, ctx: AppContext, user_state: gr.State, prompt: gr.Textbox,
                      subject_picker: gr.CheckboxGroup) -> None:
    def refresh(us):
        g, names = library(ctx, us)
        return g, gr.update(choices=names, value=names[0] if names else None), gr.update(choices=names)

    def act(fn):
        def run(us, *a):
            try:
                msg = fn(ctx, us, *a)
            except UIError as e:
                raise refused(str(e))
            return (msg,) + refresh(us)
        return run

    outs = [tab.status, tab.gallery, tab.pick, subject_picker]
    tab.create.click(act(create_subject), [user_state, tab.name, tab.views], outs, api_name="create_subject")
    tab.rename.click(act(rename_subject), [user_state, tab.pick, tab.new_name], outs)
    tab.delete.click(act(delete_subject), [user_state, tab.pick], outs)
    tab.insert.click(lambda p, n: ((p or "").rstrip() + f" @{n}").strip() if n else p, [prompt, tab.pick], prompt)
    return refresh
