"""Training pairs for the context model: (earlier message, follow-up) -> the follow-up's intent, made from tickets.

Customers leave out what the conversation already said: "How long does a transfer take?" becomes "how long
does it take?" after a message about a transfer. We make such follow-ups from the tickets' own questions,
never from the evaluation conversations: a noun phrase naming the topic ("my card", "the transfer", "a top
up") is replaced by a pronoun, and the question is paired with another ticket question that names the same
topic, so the topic must be read from the earlier message. The label stays the question's own intent.

Complete questions are paired with an unrelated earlier message and keep their label: the model must learn to
leave a message that stands on its own alone. A third, small set repeats the earlier message's matter in
generic words ("still nothing", "any news?"), labelled with the earlier message's intent.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass

from core.topics import KEEP_ASKED, PHRASES, topics_named

# Generic continuations: the customer insists on the matter of the earlier message. Written for training.
INSISTS = (
    "still nothing",
    "any news?",
    "it's still the same",
    "same problem today",
    "it keeps happening",
    "nothing has changed since",
    "i'm still waiting",
    "what should i do now?",
    "can you check?",
    "please help, it's urgent",
    "it did it again this morning",
    "still not sorted",
)


@dataclass(frozen=True)
class ContextPair:
    """An earlier message, a follow-up, and the follow-up's intent; ``kind`` says how it was made."""

    context: str
    message: str
    intent: str
    kind: str  # "elliptical", "standalone" or "insist"


def elide(question: str, rng: random.Random) -> tuple[str, str]:
    """The question with the noun phrases of one of its topics replaced by "it", and that topic ("" if none)."""
    topics = [t for t, phrase in PHRASES.items() if t not in KEEP_ASKED and phrase.search(question)]
    if not topics:
        return question.lower(), ""
    topic = rng.choice(topics)
    return PHRASES[topic].sub("it", question).strip().lower(), topic


mentions = topics_named


def make_pairs(questions: list[tuple[str, str]], seed: int = 0, standalone_share: float = 1.0, insist_share: float = 0.1) -> list[ContextPair]:
    """Pairs from ``(question, intent)`` rows: one elliptical pair per question that has a topic to leave out,
    ``standalone_share`` standalone pairs per question, and ``insist_share`` insisting pairs per question."""
    rng = random.Random(seed)
    by_topic: dict[str, list[int]] = defaultdict(list)
    for i, (question, _) in enumerate(questions):
        for topic in mentions(question):
            by_topic[topic].append(i)
    pairs: list[ContextPair] = []
    for question, intent in questions:
        short, topic = elide(question, rng)
        others = [i for i in by_topic[topic] if questions[i][0] != question] if topic else []
        if others:
            pairs.append(ContextPair(questions[rng.choice(others)][0], short, intent, "elliptical"))
        if rng.random() < standalone_share:
            pairs.append(ContextPair(rng.choice(questions)[0], question, intent, "standalone"))
    for _ in range(int(insist_share * len(questions))):
        context, intent = rng.choice(questions)
        pairs.append(ContextPair(context, rng.choice(INSISTS), intent, "insist"))
    rng.shuffle(pairs)
    return pairs
