"""The topics a customer's message can name: a card, a transfer, a top-up, an ATM...

Shared by serving and training. A follow-up that leaves its topic out ("how long does it take?") is read with
the turn before it (``bot.conversation``); a message that names a topic of its own stands alone. Training makes
such follow-ups from ticket questions by replacing the topic's noun phrase with "it" (``training.context_pairs``).
"""

from __future__ import annotations

import re

# topic -> the nouns that name it; a determiner in front makes it a noun phrase we can replace by a pronoun
TOPIC_NOUNS: dict[str, str] = {
    "card": r"(?:(?:virtual|disposable|physical|debit|credit|bank|replacement|new|old|master|visa)\s+)*cards?(?!\s+(?:payments?|purchases?|transactions?))",
    "transfer": r"(?:(?:bank|international|money|sepa|swift)\s+)*transfers?",
    "payment": r"(?:(?:card|online|contactless)\s+)*(?:payments?|purchases?|transactions?)",
    "top_up": r"(?:(?:automatic|auto)\s+)?top[\s-]?ups?|topups?",
    "withdrawal": r"(?:(?:cash|atm)\s+)?withdrawals?",
    "atm": r"atms?|cash\s+machines?|atm\s+machines?",
    "exchange": r"exchange\s+rates?|(?:currency\s+)?exchanges?|rates?",
    "refund": r"refunds?",
    "pin": r"pin(?:\s+number)?|passcode",
    "phone": r"phones?|mobile",
    "app": r"app|application",
    "account": r"accounts?",
    "cheque": r"cheques?|checks?|deposits?",
    "direct_debit": r"direct\s+debits?",
    "money": r"money|funds|cash",
    "fee": r"fees?|charges?",
}
DETERMINER = r"\b(?:my|the|a|an|this|that|your|our|these|those)\s+"
PHRASES = {topic: re.compile(DETERMINER + f"(?:{nouns})\\b", re.IGNORECASE) for topic, nouns in TOPIC_NOUNS.items()}
MENTIONS = {topic: re.compile(f"\\b(?:{nouns})\\b", re.IGNORECASE) for topic, nouns in TOPIC_NOUNS.items()}
KEEP_ASKED = {"fee"}  # the fee is usually what is asked, not the topic: left in the follow-up


def topics_named(text: str) -> set[str]:
    """The topics ``text`` names (the fee, usually what is asked rather than what about, is not one)."""
    return {topic for topic, pattern in MENTIONS.items() if topic not in KEEP_ASKED and pattern.search(text)}
