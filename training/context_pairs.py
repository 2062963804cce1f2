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

import csv
import logging
import random
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from core.errors import CsbotError
from core.topics import KEEP_ASKED, PHRASES, topics_named
from retrieval.followup_reader import READ_WORDS, FollowupReader
from retrieval.intent import IntentClassifier, with_context

log = logging.getLogger(__name__)

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


BUNDLED_FOLLOWUPS = Path(__file__).resolve().parent.parent / "data" / "followups_train.csv"
CONTEXTS_PER_FOLLOWUP = 3  # a bundled follow-up is read after this many ticket questions of the intent it follows
READER_PAIRS = 6000  # pairs made from the tickets for a fine-tuned candidate's reader (``IntentTrainConfig.followup_pairs``)
READER_DRAWS = 4  # the reader is the mean of this many, each fitted on its own draw of pairs (``FollowupReader.average``)


def bundled_followups(path: Path = BUNDLED_FOLLOWUPS) -> list[tuple[str, str, str]]:
    """``(earlier intent, follow-up, its intent)`` rows written for training (``data/followups_train.csv``, or a
    deployment's own: ``Settings.followups_file``); a missing or malformed file is one plain sentence."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as f:
            return [(row["earlier_intent"], row["message"], row["intent"]) for row in csv.DictReader(f)]
    except (OSError, KeyError, UnicodeDecodeError, csv.Error) as err:
        raise CsbotError(
            f"cannot read the written follow-ups in {path} ({type(err).__name__}: {err}); it needs the columns "
            "earlier_intent, message and intent (set CSBOT_FOLLOWUPS_FILE)"
        ) from err


def bundled_pairs(
    questions: list[tuple[str, str]],
    rng: random.Random,
    leave_out: set[str] = frozenset(),
    followups: list[tuple[str, str, str]] | None = None,
) -> list[tuple[list[str], str, str]]:
    """The written ``followups`` (default: the bundled ones), each read after ``CONTEXTS_PER_FOLLOWUP`` ticket
    questions (``(question, intent)``) of the intent it follows, as ``(earlier messages, message, intent)``;
    messages in ``leave_out`` (lower case) not, nor those about an intent the tickets lack."""
    by_intent: dict[str, list[str]] = defaultdict(list)
    for question, intent in questions:
        by_intent[intent].append(question)
    return [
        ([earlier], message, intent)
        for earlier_intent, message, intent in (bundled_followups() if followups is None else followups)
        if intent in by_intent and by_intent[earlier_intent] and message.strip().lower() not in leave_out
        for earlier in rng.sample(by_intent[earlier_intent], min(CONTEXTS_PER_FOLLOWUP, len(by_intent[earlier_intent])))
    ]


def unseen_standalone_pairs(questions: list[tuple[str, str]], unseen: list[tuple[str, str]], rng: random.Random) -> list[tuple[list[str], str, str]]:
    """The short ``unseen`` questions (at most ``READ_WORDS`` words; ``(question, intent)``), each after
    ``CONTEXTS_PER_FOLLOWUP`` ticket ``questions`` drawn at random (mostly unrelated), keeping their own intent.

    Why: the encoder was fine-tuned on the ticket questions, so read alone they are cleanly told apart, and a
    reader fitted only on them learns to trust the message alone less than it should for a question it has
    never seen (a customer's). Questions the encoder did not train on (the validation split) teach it how sure
    the message alone is for those. The 3,080 test queries, each read after another (offline, fine-tuned v0002):
    -0.26 points with the first 823 late follow-ups of 2026-12-06 and none of these, +0.03 with all 2,210 and these."""
    return [
        ([rng.choice(questions)[0]], question, intent)
        for question, intent in unseen
        if len(question.split()) <= READ_WORDS
        for _ in range(CONTEXTS_PER_FOLLOWUP)
    ]


def reader_pairs(
    questions: list[tuple[str, str]],
    labelled: list[tuple[list[str], str, str]] = (),
    limit: int = READER_PAIRS,
    seed: int = 0,
    unseen: list[tuple[str, str]] = (),
    contexts_seed: int | None = None,
    followups: list[tuple[str, str, str]] | None = None,
) -> list[tuple[list[str], str, str]]:
    """What the follow-up reader (``retrieval.followup_reader``) learns from, as ``(earlier messages, message,
    intent)``: the written ``followups`` (default: the bundled ones) after ticket questions of the intent they follow, up to ``limit`` pairs
    made from the ticket ``questions`` (``(question, intent)``, ``make_pairs``: half elliptical, half short standalone),
    the short ``unseen`` questions after unrelated ones (``unseen_standalone_pairs``), and the deployment's
    ``labelled`` follow-ups as they were read. ``limit`` 0: none (no reader is fitted). The made pairs are drawn
    with ``seed``; the earlier messages of the bundled and unseen ones with ``contexts_seed`` (default ``seed``):
    draws that share it share those texts, embedded once (``fit_followup_reader``)."""
    if limit <= 0:
        return []
    rng = random.Random(seed if contexts_seed is None else contexts_seed)
    pairs = bundled_pairs(questions, rng, followups=followups)
    pairs += unseen_standalone_pairs(questions, list(unseen), rng)
    # as many complete questions after an unrelated one as follow-ups, short ones (at most READ_WORDS words): the
    # reader reads every short message, and must leave one that stands on its own to its own words
    made = make_pairs(questions, seed=seed, standalone_share=1.0, insist_share=0.0)
    halves = [
        [p for p in made if p.kind == "elliptical"],
        [p for p in made if p.kind == "standalone" and len(p.message.split()) <= READ_WORDS],
    ]
    pairs += [([p.context], p.message, p.intent) for half, n in zip(halves, (limit - limit // 2, limit // 2)) for p in half[:n]]
    return pairs + [(list(earlier), message, intent) for earlier, message, intent in labelled]


def fit_followup_reader(model_dir: Path, draws: list[list[tuple[list[str], str, str]]], seed: int = 0, own_below: float = 1.0) -> dict:
    """Fit and save the follow-up reader of the model in ``model_dir``: one reader per draw of pairs
    (``reader_pairs`` with its own seed), averaged (``FollowupReader.average``); the card's account. A text in
    several draws is embedded once. No pairs, or a failure: the model has no reader, and its follow-ups are read
    by the plain mixture."""
    started = time.perf_counter()
    draws = [pairs for pairs in draws if pairs]
    if not draws:
        return {"fitted": False, "why": "no follow-up pairs (a quick model, or followup_pairs=0)"}
    try:
        classifier = IntentClassifier(model_dir)
        index = {label: i for i, label in enumerate(classifier.labels)}
        draws = [[(earlier, message, intent) for earlier, message, intent in pairs if intent in index] for pairs in draws]
        texts = sorted({t for pairs in draws for earlier, message, _ in pairs for t in (message, with_context(earlier, message))})
        embedded = dict(zip(texts, classifier.embed(texts)))

        def arrays(pairs: list[tuple[list[str], str, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            """(alone, together, targets) of one draw, from the shared embeddings."""
            alone = np.stack([embedded[message] for _, message, _ in pairs])
            together = np.stack([embedded[with_context(earlier, message)] for earlier, message, _ in pairs])
            return alone, together, np.array([index[intent] for *_, intent in pairs])

        reader = FollowupReader.average([FollowupReader.fit(*arrays(pairs), len(index), seed=seed + k) for k, pairs in enumerate(draws)])
        alone, together, targets = arrays(draws[0])
        reader = replace(reader.remembering(alone, together, targets), own_below=own_below)  # the first draw's pairs vote
        reader.save(model_dir)
    except Exception as err:
        log.exception("cannot fit the follow-up reader")
        return {"fitted": False, "why": f"{type(err).__name__}: {err}"}
    accuracy = float((reader.probabilities(alone, together).argmax(1) == targets).mean())
    return {
        "fitted": True,
        "draws": len(draws),
        "pairs": len(draws[0]),
        "voting_pairs": len(targets),
        "texts_embedded": len(texts),
        "training_accuracy": round(accuracy, 4),
        "own_below": own_below,
        "seconds": round(time.perf_counter() - started, 1),
    }
