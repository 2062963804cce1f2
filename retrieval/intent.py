"""The intent classifier: MiniLM with mean pooling and a cosine-similarity head, saved with ``save_pretrained``.

Why this shape: mean pooling is what all-MiniLM-L6-v2 was trained with, and a cosine head initialised
from the class means starts close to a nearest-centroid classifier, so even a frozen encoder with a
head trained for seconds is a usable first model. The saved folder is a standard BERT checkpoint
(``AutoModel.from_pretrained`` loads its encoder) plus the head and our settings in ``config.json``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoTokenizer, BertConfig, BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils import logging as hf_logging

from retrieval.encoder import CPU_SUB_BATCH, embed_shortest_first, fast_inference, mean_pool
from retrieval.followup_reader import FollowupReader
from retrieval.onnx_encoder import OnnxEncoder, onnx_wanted
from retrieval.query_map import QueryMap

log = logging.getLogger(__name__)

hf_logging.set_verbosity_error()  # load reports for our own head are expected, not news
hf_logging.disable_progress_bar()

MAX_TOKENS = 64  # BANKING77 queries are short; longer messages are cut for the classifier only
CONTEXT_SEPARATOR = " [SEP] "  # the tokenizer's own separator token: earlier messages, then the new one


def with_context(earlier: list[str], message: str) -> str:
    """How the classifier reads a follow-up with the messages before it (the same in training and serving)."""
    return CONTEXT_SEPARATOR.join([*earlier, message])


class IntentModel(BertPreTrainedModel):
    """BERT encoder -> mean pool -> L2 normalise -> scaled cosine similarity with one vector per intent.

    ``config.scale`` sharpens the cosine logits during training; ``config.calibration_temperature`` is fitted after
    training on held-out data so that softmax(logits / T) is calibrated.
    """

    config_class = BertConfig
    base_model_prefix = "bert"

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.bert = BertModel(config, add_pooling_layer=False)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels, bias=False)
        self.post_init()

    def embed(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)[0]
        with torch.autocast(device_type=hidden.device.type, enabled=False):
            return F.normalize(mean_pool(hidden.float(), attention_mask), dim=-1)

    def head(self, embeddings: torch.Tensor) -> torch.Tensor:
        """Cosine logits for already-pooled, normalised embeddings.

        Always in float32, also under bf16 autocast: at scale 20, bf16's 8-bit mantissa would blur the cosine
        differences between close intents (the encoder, where the time goes, stays in bf16).
        """
        with torch.autocast(device_type=embeddings.device.type, enabled=False):
            weight = F.normalize(self.classifier.weight.float(), dim=-1)
            return float(getattr(self.config, "scale", 20.0)) * embeddings.float() @ weight.T

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, output_hidden_states=False, **_):
        """Logits; with ``output_hidden_states`` the pooled, normalised embeddings come back as ``hidden_states[-1]``."""
        embeddings = self.embed(input_ids, attention_mask, token_type_ids)
        logits = self.head(embeddings)
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits, labels, label_smoothing=float(getattr(self.config, "label_smoothing", 0.0)))
        return SequenceClassifierOutput(loss=loss, logits=logits, hidden_states=(embeddings,) if output_hidden_states else None)


@dataclass(frozen=True)
class IntentPrediction:
    """Calibrated probabilities over intents, best first."""

    labels: list[str]
    probabilities: list[float]

    @property
    def intent(self) -> str:
        return self.labels[0]

    @property
    def confidence(self) -> float:
        return self.probabilities[0]


class IntentClassifier:
    """Inference wrapper around a saved IntentModel folder.

    Example:
        >>> clf = IntentClassifier(Path("var/models/intent/v0001")).warm_up()   # doctest: +SKIP
        >>> clf.predict(["I lost my card"])[0].intent                            # doctest: +SKIP
        'lost_or_stolen_card'
    """

    def __init__(self, model_dir: Path, device: str | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")  # a GPU when there is one
        self._model: IntentModel | None = None
        self._tokenizer = None
        self._onnx: OnnxEncoder | None = None  # the same encoder in ONNX Runtime, when CSBOT_ONNX asks for it
        self._query_map: QueryMap | None = None
        self._reader: FollowupReader | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> IntentClassifier:
        with self._lock:
            if self._model is None:
                self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
                model = IntentModel.from_pretrained(self.model_dir).to(self.device)
                model.eval()
                if onnx_wanted(self.device):
                    try:
                        self._onnx = OnnxEncoder.for_model(model, self._tokenizer, self.model_dir)
                    except Exception as err:  # no onnxruntime, a read-only folder, an export error: PyTorch serves
                        log.warning("ONNX Runtime not used for %s (%s: %s); serving with PyTorch", self.model_dir, type(err).__name__, err)
                self._query_map = QueryMap.load(self.model_dir)
                self._reader = FollowupReader.load(self.model_dir)
                self._model = model
        return self

    @property
    def labels(self) -> list[str]:
        self.warm_up()
        return [self._model.config.id2label[i] for i in range(self._model.config.num_labels)]

    @property
    def runtime(self) -> str:
        """What runs the encoder: "onnxruntime" or "pytorch" (``CSBOT_ONNX``)."""
        self.warm_up()
        return "onnxruntime" if self._onnx is not None else "pytorch"

    @property
    def config(self) -> BertConfig:
        self.warm_up()
        return self._model.config

    def embed(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Pooled, L2-normalised query embeddings of the fine-tuned encoder, shape (len(texts), hidden).

        The texts run shortest first in sub-batches (``batch_size``; on a CPU 8, where a padded batch of 32 costs
        almost twice the CPU a query: benchmarks/results/respond_latency.json), each padded only to its own longest.
        """
        self.warm_up()
        size = batch_size or (CPU_SUB_BATCH if self._model.device.type == "cpu" else 128)
        return embed_shortest_first(texts, size, self.config.hidden_size, self._embed_padded)

    def _embed_padded(self, texts: list[str]) -> np.ndarray:
        if self._onnx is not None:
            batch = self._tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="np")
            return self._onnx(batch["input_ids"], batch["attention_mask"])
        with torch.inference_mode(), fast_inference(self._model.device.type):
            batch = self._tokenizer(
                texts,
                padding=True,
                pad_to_multiple_of=16,  # few distinct shapes: the kernels' per-shape caches stay small
                truncation=True,
                max_length=MAX_TOKENS,
                return_tensors="pt",
            ).to(self._model.device)
            return self._model.embed(**batch).float().cpu().numpy()

    def logits_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        self.warm_up()
        with torch.inference_mode():
            weight = self._model.classifier.weight
            return self._model.head(torch.as_tensor(embeddings, device=weight.device, dtype=weight.dtype)).float().cpu().numpy()

    def logits(self, texts: list[str], batch_size: int | None = None) -> np.ndarray:
        """Uncalibrated logits, shape (len(texts), num_intents)."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        return self.logits_from_embeddings(self.embed(texts, batch_size))

    @property
    def shares_retrieval_encoder(self) -> bool:
        """True for a head trained on the frozen packaged encoder: its embeddings are the retrieval vectors too."""
        return bool(getattr(self.config, "frozen_base_encoder", False))

    def query_map(self, encoder_name: str) -> QueryMap | None:
        """The map of this model's embeddings into the index of ``encoder_name`` (``retrieval.query_map``), when it was
        fitted for that encoder: then one encoder pass serves both the intent and the retrieval."""
        self.warm_up()
        found = self._query_map
        return found if found is not None and found.encoder == encoder_name and not self.shares_retrieval_encoder else None

    @property
    def reads_followups(self) -> bool:
        """True when the model has a follow-up reader (``retrieval.followup_reader``) fitted on its embeddings."""
        self.warm_up()
        return self._reader is not None

    def read_followups(self, alone: np.ndarray, together: np.ndarray, top: int = 5, calibrated: bool = True) -> list[IntentPrediction]:
        """Follow-ups from their embeddings alone and read with their context, as the follow-up reader reads them
        (it sees the message alone too, and learnt how much to trust each reading). ``calibrated``: the reader's
        ``reading`` (its layer at ``TEMPERATURE`` with the nearest labelled pairs' vote), which routes the reply;
        else its layer as fitted (on which ``takes_reading`` decides whether the reading is taken at all)."""
        reader = self._followup_reader()
        return self.predict_probabilities(reader.reading(alone, together) if calibrated else reader.probabilities(alone, together), top)

    def takes_reading(self, alone: np.ndarray, together: np.ndarray, own: IntentPrediction) -> bool:
        """Is the follow-up reader's reading of one message (its embeddings alone and read with its context) taken over
        ``own``, the message read alone (``FollowupReader.takes``)?"""
        own_index = np.array([self.labels.index(own.intent)])
        return bool(self._followup_reader().takes(alone, together, own_index, np.array([own.confidence]))[0])

    def _followup_reader(self) -> FollowupReader:
        """The loaded follow-up reader; asking a model without one is a programming error (check ``reads_followups``)."""
        self.warm_up()
        if self._reader is None:
            raise ValueError(f"{self.model_dir} has no follow-up reader")
        return self._reader

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """Calibrated probabilities: softmax(logits / temperature)."""
        return self._calibrated(self.logits(texts))

    def probabilities_from_embeddings(self, embeddings: np.ndarray) -> np.ndarray:
        """``probabilities`` of already-embedded texts (when the embeddings serve retrieval too)."""
        return self._calibrated(self.logits_from_embeddings(embeddings))

    def _calibrated(self, logits: np.ndarray) -> np.ndarray:
        logits = logits / float(getattr(self.config, "calibration_temperature", 1.0))
        logits -= logits.max(axis=1, keepdims=True)
        probs = np.exp(logits)
        return probs / probs.sum(axis=1, keepdims=True)

    def predict(self, texts: list[str], top: int = 5) -> list[IntentPrediction]:
        return self.predict_probabilities(self.probabilities(texts), top)

    def predict_from_embeddings(self, embeddings: np.ndarray, top: int = 5) -> list[IntentPrediction]:
        return self.predict_probabilities(self.probabilities_from_embeddings(embeddings), top)

    def predict_probabilities(self, probabilities: np.ndarray, top: int = 5) -> list[IntentPrediction]:
        labels = self.labels
        result = []
        for row in probabilities:
            order = np.argsort(-row)[:top]
            result.append(IntentPrediction([labels[i] for i in order], [float(row[i]) for i in order]))
        return result
