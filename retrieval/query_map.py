"""One encoder pass per message with a fine-tuned intent model: its embedding, mapped into the ticket index's space.

Why: the tickets are indexed with the packaged encoder; a fine-tuned intent model has an encoder of its own.
Serving then ran two transformer passes per message (the intent model's and the retrieval encoder's), and
after ``csbot train`` a 2-core machine answered half as many customers (83 replies/s against 152 with the
quick model, benchmarks/results/load_avx2_finetuned.json). Re-indexing the tickets with every promoted model
would tie the ticket store to the intent versions. Instead, at training time a linear map (ridge least
squares, with a bias) is fitted from the candidate's embeddings of ticket questions to the vectors the index
stores for them, and saved in the version's folder (``retrieval_map.npz``). Measured on the bundled data with
a fine-tuned model: cosine 0.965 between mapped and exact query vectors on the 3,080 test queries; FAISS
order hit@1 92.7% with mapped vectors against 92.1% with exact ones.

Where it cannot be trusted: a message about something else. The fine-tuned encoder pulls every message
towards a banking intent, so the mapped vector of "who won the match" lands nearer the tickets than its exact
vector does (by about 0.12 cosine on unrelated questions), and the out-of-scope check (``min_similarity``)
would let it through. So a message whose nearest ticket is within ``EXACT_MARGIN`` of that floor is encoded
exactly and searched again: the decision near the floor is the one the exact vectors make.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from threadpoolctl import ThreadpoolController

if TYPE_CHECKING:
    from core.registry import ModelRegistry
    from retrieval.encoder import Encoder
    from retrieval.intent import IntentClassifier
    from retrieval.knowledge_base import KnowledgeBase

log = logging.getLogger(__name__)

MAP_FILE = "retrieval_map.npz"
EXACT_MARGIN = 0.15  # unrelated questions: mapped nearest-ticket similarity up to ~0.15 above the exact one
FIT_TICKETS = 8000  # tickets a map is fitted on (384 x 385 weights are well determined by far fewer)
RIDGE = 0.01

Hits = list[list[tuple]]


@functools.cache
def _blas() -> ThreadpoolController:
    """numpy's BLAS, held to one thread for the map's small product: OpenBLAS's own threads, woken for it by every
    batch, spun on the cores the encoder needs. Measured in-process, 32 threads calling ``respond`` on 2 cores, the
    fine-tuned model with its map: 150 replies/s and 12.4 ms CPU a reply (6.3 ms of it in threads outside Python)
    with OpenBLAS's threads, 187 and 9.8 ms with one; the quick model 190 and 9.5 ms."""
    return ThreadpoolController()


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


@dataclass(frozen=True)
class QueryMap:
    """``weights`` (intent dim + 1, index dim): [embedding, 1] @ weights ~ the index's vector of the same text."""

    weights: np.ndarray
    encoder: str  # the retrieval encoder whose space it maps into: another encoder's index cannot use it

    def __call__(self, intent_vectors: np.ndarray) -> np.ndarray:
        ones = np.ones((len(intent_vectors), 1), dtype=np.float32)
        with _blas().limit(limits=1, user_api="blas"):  # see _blas
            return _normalised(np.hstack([np.asarray(intent_vectors, dtype=np.float32), ones]) @ self.weights)

    @classmethod
    def fit(cls, intent_vectors: np.ndarray, index_vectors: np.ndarray, encoder: str, ridge: float = RIDGE) -> QueryMap:
        x = np.hstack([intent_vectors, np.ones((len(intent_vectors), 1))]).astype(np.float64)
        weights = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ index_vectors.astype(np.float64))
        return cls(weights.astype(np.float32), encoder)

    def save(self, model_dir: Path) -> None:
        np.savez(Path(model_dir) / MAP_FILE, weights=self.weights, encoder=np.array(self.encoder))

    @classmethod
    def load(cls, model_dir: Path) -> QueryMap | None:
        """The saved map, or None (none saved, or unreadable: then the retrieval encoder runs, as without one)."""
        path = Path(model_dir) / MAP_FILE
        if not path.is_file():
            return None
        try:
            with np.load(path) as saved:
                return cls(saved["weights"], str(saved["encoder"]))
        except Exception as err:  # a damaged file costs speed, never the model version
            log.warning("cannot read %s (%s: %s); messages are encoded for retrieval instead", path, type(err).__name__, err)
            return None


def fit_query_map(kb: KnowledgeBase, embed: Callable[[list[str]], np.ndarray], model_dir: Path, seed: int = 0) -> dict:
    """Fit and save the map of the model in ``model_dir`` (``embed``: its embeddings) on the stored tickets.

    A fifth of the sampled tickets is held out to say how close the mapped vectors come (the card shows it)."""
    questions, vectors = kb.sample_vectors(FIT_TICKETS, seed=seed)
    if len(questions) < 50:
        return {"fitted": False, "why": f"only {len(questions)} tickets"}
    try:
        embedded = embed(questions)
    except Exception as err:  # the candidate still goes to the gate; without a map it serves with two passes
        log.exception("cannot fit the retrieval map")
        return {"fitted": False, "why": f"{type(err).__name__}: {err}"}
    held = np.arange(len(questions)) % 5 == 0
    check = QueryMap.fit(embedded[~held], vectors[~held], kb.encoder.name)
    cosine = float((check(embedded[held]) * _normalised(vectors[held])).sum(1).mean())
    QueryMap.fit(embedded, vectors, kb.encoder.name).save(model_dir)
    return {"fitted": True, "tickets": len(questions), "held_out_cosine": round(cosine, 4)}


def search_with(kb: KnowledgeBase, query_map: QueryMap | None, texts: list[str], vectors: np.ndarray, k: int, floor: float) -> Hits:
    """Search with ``vectors``; when they were mapped, messages whose nearest ticket is within ``EXACT_MARGIN``
    of the out-of-scope ``floor`` are encoded exactly and searched again."""
    hits = kb.search(vectors, k)
    if query_map is None:
        return hits
    near = [i for i, found in enumerate(hits) if not found or found[0][1] < floor + EXACT_MARGIN]
    if near:
        exact = kb.search(kb.encoder.encode([texts[i] for i in near]), k)
        for i, found in zip(near, exact):
            hits[i] = found
    return hits


def vectors_kind(classifier: IntentClassifier, encoder_name: str) -> str:
    """How messages are searched under this intent model: "shared" (its own embeddings: a head on the frozen
    retrieval encoder), "mapped" (a fine-tuned model with a map for this encoder) or "encoded" (the encoder runs)."""
    if classifier.shares_retrieval_encoder:
        return "shared"
    return "mapped" if classifier.query_map(encoder_name) is not None else "encoded"


def query_vectors(classifier: IntentClassifier, encoder: Encoder, texts: list[str], intent_vectors: np.ndarray | None = None) -> np.ndarray:
    """The vectors messages are searched with under this intent model (``vectors_kind``); ``intent_vectors``: its
    embeddings of ``texts`` when already computed."""
    kind = vectors_kind(classifier, encoder.name)
    if kind == "encoded":
        return encoder.encode(texts)
    embedded = classifier.embed(texts) if intent_vectors is None else intent_vectors
    return embedded if kind == "shared" else classifier.query_map(encoder.name)(embedded)


def retrieve(kb: KnowledgeBase, classifier: IntentClassifier, texts: list[str], k: int, floor: float, intent_vectors: np.ndarray | None = None) -> Hits:
    """The tickets serving retrieves for ``texts`` under ``classifier`` (training and evaluation see the same)."""
    if not texts:
        return []
    vectors = query_vectors(classifier, kb.encoder, texts, intent_vectors)
    return search_with(kb, classifier.query_map(kb.encoder.name), texts, vectors, k, floor)


def ensure_query_map(kb: KnowledgeBase, registry: ModelRegistry, *, on_step: Callable[[str], None] = log.info) -> dict | None:
    """A fine-tuned intent version trained before query maps existed gets its map at the next start (once, about
    25 s for 8,000 tickets on 2 cores), so an upgraded install runs one encoder pass without retraining."""
    from transformers import AutoConfig

    from retrieval.intent import IntentClassifier  # here: the classifier module imports this one

    version = registry.current_version("intent")
    if version is None:
        return None
    path = registry.path("intent", version)
    try:
        if (path / MAP_FILE).exists() or getattr(AutoConfig.from_pretrained(path), "frozen_base_encoder", False):
            return None
        on_step(f"fitting the retrieval map of intent {version}: one encoder pass per message from now on")
        return fit_query_map(kb, IntentClassifier(path).embed, path)
    except Exception as err:  # a read-only or broken model folder: serving decides what to do with it, as before
        log.warning("no retrieval map for intent %s (%s: %s); it serves with two encoder passes", version, type(err).__name__, err)
        return None
