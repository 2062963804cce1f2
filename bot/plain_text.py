"""Showing what people typed exactly as typed, in Gradio's Markdown: no HTML and no Markdown of theirs.

Customers, agents and ticket authors all type into the product; a ``![](https://…)`` in a message must not load
an image in somebody else's browser, and a ``**`` must not restyle a reply. HTML-escaping alone leaves Markdown
live, so both are escaped.
"""

from __future__ import annotations

import html
import re

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~])")


def plain(text: str | None) -> str:
    """``text`` as Markdown that renders to exactly ``text`` (line breaks kept)."""
    # HTML first (quote=False: its entities then hold no Markdown character), then Markdown's punctuation.
    return _MARKDOWN.sub(r"\\\1", html.escape(text or "", quote=False)).replace("\n", "  \n")
