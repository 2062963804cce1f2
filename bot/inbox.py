"""The agent inbox (Gradio, at /agent, behind an agent's or the admin's login).

Waiting and assigned conversations, oldest wait first; the whole transcript of the selected one (the bot's
turns with intent, confidence, sources and the customer's vote, and what people said); claim, reply, an
internal note, transfer, resolve with the right intent (and optionally save the answer as a ticket), hand
back to the bot. It refreshes itself every second, so a customer's message shows within about a second.
Everything anybody typed is shown as text (HTML and Markdown escaped).
"""

from __future__ import annotations

import gradio as gr

from bot.agents import AgentDirectory
from bot.assistant import Assistant
from bot.plain_text import plain
from core.errors import CsbotError

REFRESH_S = 1.0
INBOX_COLUMNS = ["conversation", "state", "agent", "waiting", "intent", "confidence", "unread"]


def minutes(seconds: int) -> str:
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def transcript_messages(items: list[dict]) -> list[dict]:
    """The transcript as chat messages: the customer on the right, the bot, agents and events on the left."""
    out: list[dict] = []
    for item in items:
        if item["kind"] == "turn":
            out.append({"role": "user", "content": plain(item["message"])})
            if item["text"]:
                meta = [f"bot · {item['action']}"]
                if item["intent"]:
                    meta.append(f"{plain(item['intent'])} {item['confidence']:.0%}")
                if item["sources"]:
                    meta.append("sources " + ", ".join(f"#{s['ticket_id']}" for s in item["sources"]))
                if item["vote"]:
                    meta.append("customer voted " + ("up" if item["vote"] > 0 else "down"))
                if item["comment"]:
                    meta.append(f"comment: “{plain(item['comment'])}”")
                if item["label"]:
                    meta.append(f"labelled {plain(item['label'])}")
                out.append({"role": "assistant", "content": f"{plain(item['text'])}\n\n<sub>{' · '.join(meta)}</sub>"})
            continue
        who, kind, data = plain(item["author"] or ""), item["event"], item["data"]
        text = {
            "waiting": f"_waiting for a person ({plain(data.get('reason', ''))})_",
            "assigned": f"_{who} took the conversation_" if not data.get("from") else f"_{plain(data['from'])} transferred it to {who}_",
            "agent": f"**{who}:** {plain(item['text'])}",
            "note": f"_internal note by {who}:_ {plain(item['text'])}",
            "resolved": f"_resolved by {who}" + (f" as {plain(data.get('intent', ''))}" if data.get("intent") else "") + "_",
            "bot": f"_{who or 'someone'} handed the conversation back to the bot_",
            "offer_message": f"_the customer was offered to leave a message: {plain(item['text'])}_",
            "contact_left": f"_the customer left a message and a contact address (contact #{data.get('contact_id')})_",
        }.get(kind, "")
        if text:
            out.append({"role": "assistant", "content": text})
    return out


def review_picker(desk):
    """The review queue's row select: selects the row's turn and shows its conversation.

    Defined here, where ``gr`` is a module global: Gradio finds the ``gr.SelectData`` parameter by its annotation.
    """

    def pick(rows: list[dict], evt: gr.SelectData):
        index = evt.index[0] if isinstance(evt.index, (list, tuple)) else evt.index
        if not rows or index is None or index >= len(rows):
            return gr.update(), []
        row = rows[index]
        return gr.update(value=row["turn_id"]), transcript_messages(desk.transcript(row["session_id"]))

    return pick


def build_inbox_ui(assistant: Assistant, agents: AgentDirectory) -> gr.Blocks:
    """Example: mounted by ``bot.api.create_app`` at /agent with ``auth=agents.login``."""
    desk = assistant.desk

    def me(request: gr.Request | None) -> str:
        name = getattr(request, "username", None) or ""
        if name:
            agents.seen(name)
        return name

    def listing():
        rows = desk.inbox()
        return [
            [r["session_id"], r["state"], r["agent"] or "", minutes(r["waited_s"]), r["intent"] or "", f"{(r['confidence'] or 0):.0%}", r["unread"]]
            for r in rows
        ]

    def view(session_id: str, seen: str):
        """The transcript when it changed since ``seen`` (a fingerprint), else no update: no flicker each second."""
        if not session_id:
            return gr.update(), "", seen
        items = desk.transcript(session_id)
        state, holder = desk.state(session_id)
        mark = f"{len(items)}:{items[-1]['at'] if items else ''}:{state}:{holder}"
        if mark == seen:  # the state line depends on the same turns and events: unchanged too
            return gr.update(), gr.update(), seen
        label = {"waiting": "**waiting for a person**", "assigned": f"**assigned to {plain(holder)}**", "bot": "**the bot has it**"}[state]
        to_label = desk.turns_to_label(session_id) if state == "assigned" else []
        if to_label:
            label += f" · resolving labels: “{plain(to_label[0]['message'])}”"
        return transcript_messages(items), label, mark

    def tick(session_id: str, seen: str, request: gr.Request):
        who = me(request)
        return listing(), *view(session_id, seen), f"Signed in as **{plain(who)}**"

    def select(evt: gr.SelectData):
        row = evt.row_value if getattr(evt, "row_value", None) else None
        session_id = str(row[0]) if row else ""
        return session_id, session_id, *view(session_id, "")

    def act(fn, *args, ok: str = ""):
        try:
            fn(*args)
        except CsbotError as err:
            return str(err)
        return ok

    with gr.Blocks(title="csbot agent inbox", analytics_enabled=False) as ui:
        gr.Markdown("## Agent inbox")
        who = gr.Markdown(elem_id="inbox-who")
        session = gr.State("")
        seen = gr.State("")
        table = gr.Dataframe(headers=INBOX_COLUMNS, label="Waiting and assigned conversations (oldest first)", interactive=False, elem_id="inbox-table")
        with gr.Row():
            session_box = gr.Textbox(label="Conversation", interactive=False, elem_id="inbox-session", scale=2)
            state_box = gr.Markdown(elem_id="inbox-state")
        transcript = gr.Chatbot(label="Transcript", height=380, elem_id="inbox-transcript")
        with gr.Row():
            claim = gr.Button("Assign to me", variant="primary", elem_id="inbox-claim")
            release = gr.Button("Hand back to the bot", elem_id="inbox-release")
        with gr.Row():
            reply_box = gr.Textbox(placeholder="Reply to the customer", show_label=False, scale=5, elem_id="inbox-reply")
            send = gr.Button("Send", scale=1, elem_id="inbox-send")
        with gr.Row():
            note_box = gr.Textbox(placeholder="Internal note (the customer never sees it)", show_label=False, scale=5, elem_id="inbox-note")
            add_note = gr.Button("Add note", scale=1, elem_id="inbox-add-note")
        with gr.Row():
            transfer_to = gr.Dropdown(label="Transfer to", choices=agents.names(), value=None, elem_id="inbox-transfer-to")
            transfer = gr.Button("Transfer", elem_id="inbox-transfer")
        with gr.Row():
            intent = gr.Dropdown(label="Right intent (the bot learns it)", choices=assistant.kb.intents(), value=None, elem_id="inbox-intent")
            answer_box = gr.Textbox(label="Save an answer as a ticket for this question (optional)", elem_id="inbox-answer")
            resolve = gr.Button("Resolve", variant="primary", elem_id="inbox-resolve")
        status = gr.Markdown(elem_id="inbox-status")

        refreshed = [table, transcript, state_box, seen, who]
        timer = gr.Timer(REFRESH_S)
        timer.tick(tick, [session, seen], refreshed, show_progress="hidden")
        ui.load(tick, [session, seen], refreshed)
        table.select(select, None, [session, session_box, transcript, state_box, seen])
        ui.load(lambda: gr.update(choices=agents.names(), value=None), None, [transfer_to])  # agents added since the server started

        def after(message: str, session_id: str):
            return message, listing(), *view(session_id, "")

        outs = [status, table, transcript, state_box, seen]

        def on_claim(session_id, request: gr.Request):
            return act(desk.claim, session_id, me(request), ok="Assigned to you.")

        def on_release(session_id, request: gr.Request):
            return act(desk.release, session_id, me(request), ok="Handed back to the bot.")

        claim.click(on_claim, [session], [status]).then(after, [status, session], outs)
        release.click(on_release, [session], [status]).then(after, [status, session], outs)

        def on_reply(text, session_id, request: gr.Request):
            message = act(desk.reply, session_id, me(request), text)
            return ("" if not message else text), message

        send.click(on_reply, [reply_box, session], [reply_box, status]).then(after, [status, session], outs)
        reply_box.submit(on_reply, [reply_box, session], [reply_box, status]).then(after, [status, session], outs)

        def on_note(text, session_id, request: gr.Request):
            message = act(desk.note, session_id, me(request), text)
            return ("" if not message else text), message

        add_note.click(on_note, [note_box, session], [note_box, status]).then(after, [status, session], outs)

        def on_transfer(to, session_id, request: gr.Request):
            return act(desk.transfer, session_id, me(request), to or "", agents.names(), ok=f"Transferred to {plain(to or '')}.")

        transfer.click(on_transfer, [transfer_to, session], [status]).then(after, [status, session], outs)

        def on_resolve(label, answer, session_id, request: gr.Request):
            try:
                done = desk.resolve(session_id, me(request), label or "", known_intents=set(assistant.kb.intents()), answer=answer or "")
            except CsbotError as err:
                return str(err), answer
            saved = f" Saved as ticket #{done['ticket_id']}." if done["ticket_id"] else ""
            return f"Resolved; {len(done['labelled'])} turn(s) labelled {plain(label or '(none)')}.{saved}", ""

        resolve.click(on_resolve, [intent, answer_box, session], [status, answer_box]).then(after, [status, session], outs)
    return ui
