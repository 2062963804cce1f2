"""The Gradio chat: thumbs on every bot message (the chatbot's like event), sources, topic buttons, handoff.

Topic buttons are real buttons: "Did you mean…" when the bot asks to clarify, "Customers also asked" after
an answer (learnt from sessions, ``core.next_questions``), the other topics the message could be about after a
down-vote on an answer. Either way a click calls ``Assistant.choose`` on the turn the buttons were offered for.

Callbacks only unpack, call the Assistant and format. Everything a person typed (the customer, an agent, a
ticket's author) is shown as typed: HTML and Markdown escaped (``bot.plain_text``).
"""

from __future__ import annotations

import html
import uuid

import gradio as gr

from bot.assistant import ALTERNATIVES_TEXT, Assistant
from bot.plain_text import plain
from core.errors import CsbotError
from core.store import STATES
from core.types import Reply

MAX_TOPIC_BUTTONS = 3
LIVE_POLL_S = 1.0  # while a person has the conversation, the chat looks for their messages this often


def format_event(event: dict) -> str:
    """What people do in the conversation, as the customer sees it ("" for what needs no message)."""
    who = plain(event["author"])
    return {
        "assigned": f"_{who} from support joined the conversation._",
        "agent": f"**{who} from support:** {plain(event['text'])}",
        "resolved": f"_{who} marked your question as solved. The bot is back: ask me anything._",
        "bot": "_You're back with the bot: ask me anything._",
        "offer_message": f"_{plain(event['text'])}_",
    }.get(event["event"], "")


def format_reply(reply: Reply) -> str:
    """The bot message as Markdown: the answer, then its sources (escaped: ticket text came from users)."""
    parts = [plain(reply.text)]
    if reply.notice:
        parts.append(f"_{html.escape(reply.notice)}_")
    if reply.action == "clarify":
        parts.append("\n".join(f"- {html.escape(s.title)}" for s in reply.suggestions))
    if reply.action == "answer" and reply.sources:
        cited = ", ".join(f"#{s.ticket_id} ({s.score:.2f})" for s in reply.sources)
        parts.append(f"<sub>Sources: tickets {cited} · {html.escape(reply.intent)} · {reply.confidence:.0%}</sub>")
    return "\n\n".join(parts)


def build_ui(assistant: Assistant) -> gr.Blocks:
    """Example:
    >>> build_ui(assistant).launch()   # doctest: +SKIP
    """
    with gr.Blocks(title="Support chat", analytics_enabled=False) as demo:
        gr.Markdown("## Support chat\nAsk about your card, payments, transfers, top-ups or your account.")
        session = gr.State(None)
        turn_ids = gr.State([])  # turn id of each chatbot message (None for the customer's own messages)
        last_suggestions = gr.State([])  # (title, intent, turn id) of each topic button shown
        chatbot = gr.Chatbot(label="Conversation", height=460, feedback_options=("Like", "Dislike"), elem_id="chat")
        with gr.Row(elem_id="suggestions"):
            topics_label = gr.Markdown(visible=False, elem_id="suggestions-label")
            topic_buttons = [gr.Button(visible=False, size="sm", elem_id=f"suggestion-{i}", elem_classes="suggestion") for i in range(MAX_TOPIC_BUTTONS)]
        with gr.Row():
            message = gr.Textbox(placeholder="Type your question and press Enter", show_label=False, scale=5, elem_id="message")
            send = gr.Button("Send", variant="primary", scale=1)
        with gr.Row():
            comment = gr.Textbox(placeholder="What was wrong with the last answer? (optional)", show_label=False, scale=5, elem_id="comment")
            send_comment = gr.Button("Send comment", scale=1)
            person = gr.Button("Talk to a person", scale=1)
        status = gr.Markdown(elem_id="status")
        live = gr.Timer(LIVE_POLL_S, active=False)  # on while a person has the conversation
        last_event = gr.State(0)  # the id of the last people-side event shown

        def show(reply: Reply, history: list, ids: list, user_text: str | None):
            if user_text is not None:
                history = history + [{"role": "user", "content": plain(user_text)}]
                ids = ids + [None]
            if reply.text:  # empty while a person has the conversation: the bot says nothing
                history = history + [{"role": "assistant", "content": format_reply(reply)}]
                ids = ids + [reply.turn_id]
            offered = reply.suggestions if reply.action == "clarify" else reply.next_questions if reply.action == "answer" else []
            choices = [(s.title, s.intent, reply.turn_id) for s in offered[:MAX_TOPIC_BUTTONS]]
            return history, ids, reply.session_id, choices, *topic_updates(choices, reply.action)

        def topic_updates(choices: list, action: str = "") -> list:
            """The label and the buttons for ``choices``; hidden when there are none."""
            label = {"clarify": "Did you mean…", "alternatives": ALTERNATIVES_TEXT}.get(action, "Customers also asked:")
            buttons = [gr.update(value=title, visible=True) for title, *_ in choices]
            buttons += [gr.update(visible=False)] * (MAX_TOPIC_BUTTONS - len(choices))
            return [gr.update(value=label, visible=bool(choices)), *buttons]

        no_topics = topic_updates([])
        topics_as_they_are = [gr.update()] * (1 + MAX_TOPIC_BUTTONS)  # a failed click leaves the label and buttons shown

        def on_send(text, history, ids, session_id):
            try:
                reply = assistant.respond(text, session_id)
            except CsbotError as err:
                return history, ids, session_id, [], *no_topics, text, str(err), gr.update()
            # A person has the conversation (asked for in words, or the bot was unsure twice): follow it live.
            return *show(reply, history, ids, text), "", "", gr.Timer(active=reply.state != "bot")

        outputs = [chatbot, turn_ids, session, last_suggestions, topics_label, *topic_buttons, message, status, live]
        message.submit(on_send, [message, chatbot, turn_ids, session], outputs)
        send.click(on_send, [message, chatbot, turn_ids, session], outputs)

        def on_choose(index, offered, history, ids, session_id):
            if index >= len(offered):
                return history, ids, session_id, offered, *topics_as_they_are, gr.update(), "", gr.update()
            title, intent, offered_on = offered[index]
            try:
                reply = assistant.choose(offered_on, intent, session_id)
            except CsbotError as err:
                return history, ids, session_id, offered, *topics_as_they_are, gr.update(), str(err), gr.update()
            return *show(reply, history, ids, title), gr.update(), "", gr.update()

        chosen_inputs = [last_suggestions, chatbot, turn_ids, session]
        for i, button in enumerate(topic_buttons):
            button.click(lambda offered, history, ids, sid, i=i: on_choose(i, offered, history, ids, sid), chosen_inputs, outputs)

        def on_like(data: gr.LikeData, ids, session_id, note):
            """A vote; after a down-vote on an answer, its alternatives become the topic buttons ("Did you mean…")."""
            index = data.index if isinstance(data.index, int) else data.index[0]
            turn_id = ids[index] if 0 <= index < len(ids) else None
            if turn_id is None:
                return "You can vote on the bot's messages only.", gr.update(), *topics_as_they_are
            liked = data.liked is True or data.liked == "Like"
            try:
                receipt = assistant.feedback(turn_id, 1 if liked else -1, comment=note or "", session_id=session_id)
            except CsbotError as err:
                return str(err), gr.update(), *topics_as_they_are
            choices = [(s.title, s.intent, turn_id) for s in receipt.alternatives[:MAX_TOPIC_BUTTONS]]
            topics = topic_updates(choices, "alternatives") if choices else topics_as_they_are
            if receipt.offer_person:
                said = "Sorry this isn't going well. Would you like to talk to a person? Press “Talk to a person” below."
            elif liked:
                said = "Thanks for the feedback!"
            else:
                said = "Thanks, we'll use this to improve. Add a comment below if you like."
            return said, choices if choices else gr.update(), *topics

        chatbot.like(on_like, [turn_ids, session, comment], [status, last_suggestions, topics_label, *topic_buttons])

        def on_comment(note, ids, session_id):
            last_bot = next((t for t in reversed(ids) if t), None)
            if not note.strip() or last_bot is None:
                return note, "Write a comment about one of the bot's answers first."
            try:
                assistant.feedback(last_bot, -1, comment=note, session_id=session_id)
            except CsbotError as err:
                return note, str(err)
            return "", "Thanks, your comment was recorded."

        send_comment.click(on_comment, [comment, turn_ids, session], [comment, status])

        with gr.Row(visible=False, elem_id="contact-form") as contact_row:
            contact = gr.Textbox(placeholder="Your email address or phone number", show_label=False, scale=2, elem_id="contact")
            contact_note = gr.Textbox(placeholder="Your message", show_label=False, scale=4, elem_id="contact-message")
            leave = gr.Button("Leave message", scale=1, elem_id="contact-send")

        def on_person(history, ids, session_id):
            session_id = session_id or uuid.uuid4().hex
            try:
                text = assistant.handoff(session_id)
            except CsbotError as err:
                return history, session_id, gr.Timer(active=False), str(err)
            history = history + [{"role": "user", "content": "Talk to a person"}, {"role": "assistant", "content": html.escape(text)}]
            return history, session_id, gr.Timer(active=True), ""

        person.click(on_person, [chatbot, turn_ids, session], [chatbot, session, live, status])

        def follow(history, session_id, after):
            """While a person has the conversation: their messages, joins and hand-backs, as they happen."""
            if not session_id:
                return history, after, gr.Timer(active=False), gr.update()
            events = assistant.desk.customer_events(session_id, after)
            assistant.desk.check_wait(session_id)
            offered, still = gr.update(), True
            for event in events:
                after = event["id"]
                text = format_event(event)
                if text:
                    history = history + [{"role": "assistant", "content": text}]
                if event["event"] == "offer_message":
                    offered = gr.update(visible=True)
                if event["event"] in STATES:  # the latest state event decides
                    still = event["event"] in ("waiting", "assigned")
            return history, after, gr.Timer(active=still), offered

        live.tick(follow, [chatbot, session, last_event], [chatbot, last_event, live, contact_row], show_progress="hidden")

        def on_leave(who, note, session_id):
            try:
                assistant.desk.leave_contact(session_id or "", who or "", note or "")
            except CsbotError as err:
                return who, note, str(err), gr.update()
            return "", "", "Thanks: we'll get back to you. Your contact address is kept only for this.", gr.update(visible=False)

        leave.click(on_leave, [contact, contact_note, session], [contact, contact_note, status, contact_row])
    return demo
