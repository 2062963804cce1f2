"""Reading the customer's mood: when to offer a person before the customer has to ask.

Three signals, each cheap and explainable to a support team:
- two down-votes in a row on the bot's answers;
- the same question again right after a down-vote (the customer did not get what they needed);
- angry words: swearing, "useless", "ridiculous", "stupid bot", shouting in capitals, "!!!".

An offer is a question ("Would you like to talk to a person?") with a button, never a handoff by itself: a
customer who wanted the bot keeps it. ``benchmarks/handoff.py`` counts how often the words fire on the
3,080 BANKING77 test queries (questions from calm customers: every offer there is a false one).
"""

from __future__ import annotations

import re

OFFER_TEXT = "Sorry this isn't going well. Would you like to talk to a person?"
ANGRY = re.compile(
    r"\b(useless|ridiculous|pathetic|terrible|awful|worst|stupid|idiot\w*|incompetent|rubbish|garbage|joke|scam|"
    r"fed up|sick of|had enough|furious|angry|annoyed|unacceptable|disgrac\w+|wtf|damn\w*|hell|crap|shit\w*|fuck\w*|"
    r"doesn'?t (help|understand)|not helpful|no help|you('re| are) not (listening|helping)|waste of time)\b"
    r"|!{3,}",
    re.IGNORECASE,
)
SHOUTING_MIN_LETTERS = 12


def angry(message: str) -> bool:
    """Angry words, or a message shouted in capitals (at least ``SHOUTING_MIN_LETTERS`` letters, all upper case)."""
    letters = [c for c in message if c.isalpha()]
    shouting = len(letters) >= SHOUTING_MIN_LETTERS and all(c.isupper() for c in letters)
    return shouting or bool(ANGRY.search(message))


def frustrated(message: str, recent_votes: list[int], repeats_down_voted: bool) -> str:
    """Why to offer a person ("" = no reason). ``recent_votes``: the session's latest votes, newest first."""
    if len(recent_votes) >= 2 and recent_votes[0] < 0 and recent_votes[1] < 0:
        return "two down-votes in a row"
    if repeats_down_voted:
        return "asked again after a down-vote"
    if message and angry(message):
        return "angry words"
    return ""
