"""From a query to scored candidates: the encoder, the FAISS ticket index, the knowledge base, the intent
classifier and the ranker. Knows nothing of the UI or of training."""

from __future__ import annotations

import os

# Code must never download weights: everything loads from local folders.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
