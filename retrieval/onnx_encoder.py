"""The intent encoder in ONNX Runtime: the same embeddings, a single query in about a third of the time on AVX2.

Measured on a 2-core AVX2 EPYC (``benchmarks/onnx_encoder.py``): 5.5 ms p50 per single query instead of 15.1 ms
in PyTorch, 319 instead of 260 sentences/s at batch 32, the same intent on 100% of the 3,080 test queries.
``CSBOT_ONNX`` = auto (default) | on | off. auto: on for every CPU, never on a GPU. On a 2-core Xeon with
AVX512-BF16 and AMX, fp32 in ONNX Runtime also beat bf16 PyTorch: single ``respond`` p50 5.5 ms instead of 10.0,
and 229-236 replies/s at 32 clients instead of 177-189 (two interleaved pairs,
``benchmarks/results/respond_latency_bf16_cpu.json``, ``load_bf16.json``, ``load_xeon_bf16_off.json``).
``off`` keeps PyTorch (with bf16 autocast where the CPU has it).

The exported graph of an intent model (``onnx/encoder.onnx`` inside the model's own folder, next to the PyTorch
weights) is written by the trainer when it saves a version (``training.train_intent``), or from the saved model
the first time a process serves a version without one. The packaged retrieval encoder's graph goes to a cache
folder (``CSBOT_CACHE_DIR``, default ``~/.cache/csbot``), one per encoder, exported on first use: the package's
own folder may be read-only. Never downloaded. Written to a temporary name and renamed, so replicas sharing a
folder never read half a file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from retrieval.encoder import mean_pool

log = logging.getLogger(__name__)
ONNX_FILE = Path("onnx") / "encoder.onnx"


def onnx_wanted(device: str) -> bool:
    """Whether to serve the encoder from ONNX Runtime (``CSBOT_ONNX``; see the module docstring)."""
    mode = os.environ.get("CSBOT_ONNX", "auto").strip().lower()
    if mode not in {"on", "off", "auto"}:
        raise ValueError(f"CSBOT_ONNX must be on, off or auto, found {mode!r}")
    return mode != "off" and device == "cpu"


class _Embed(torch.nn.Module):
    """``IntentModel.embed`` as a module with two inputs: what the graph computes."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.embed(input_ids, attention_mask)


class MeanPooled(torch.nn.Module):
    """A sentence-transformers encoder (transformer, mean pooling, normalise) with ``IntentModel.embed``'s signature."""

    def __init__(self, transformer) -> None:
        super().__init__()
        self.transformer = transformer

    def embed(self, input_ids, attention_mask):
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask)[0]
        return torch.nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)


def cache_dir() -> Path:
    """Where exported graphs of packaged encoders live (``CSBOT_CACHE_DIR``, default ``~/.cache/csbot``)."""
    return Path(os.environ.get("CSBOT_CACHE_DIR") or Path.home() / ".cache" / "csbot")


def export_encoder(model, tokenizer, model_dir: Path) -> Path:
    """Write ``model_dir/onnx/encoder.onnx`` from a loaded IntentModel (fp32, dynamic batch and length)."""
    return export_graph(model, tokenizer, Path(model_dir) / ONNX_FILE)


def export_graph(model, tokenizer, path: Path) -> Path:
    """Write ``model.embed(input_ids, attention_mask)`` to ``path`` as an ONNX graph (fp32, dynamic batch and length)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sample = tokenizer(["how long does a transfer take?", "hi"], padding=True, return_tensors="pt")
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on Python branches that the graph fixes
            torch.onnx.export(
                _Embed(model).eval().float(),
                (sample["input_ids"], sample["attention_mask"]),
                tmp,
                input_names=["input_ids", "attention_mask"],
                output_names=["embedding"],
                dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class OnnxEncoder:
    """An ONNX Runtime session over ``encoder.onnx``: token ids and mask in, pooled normalised embeddings out."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        # Its threads would spin between batches, burning the CPU the web server and the database need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    @classmethod
    def for_sentence_transformer(cls, model) -> OnnxEncoder:
        """The session for a mean-pooled, normalised sentence-transformers model, from the cache or exported into it.

        Keyed by the weights file's path, size and time, so another version of the package gets its own graph.
        """
        transformer = model[0].auto_model
        pooling = model[1].get_config_dict() if len(model) > 1 else {}
        mean = pooling.get("pooling_mode") == "mean" or pooling.get("pooling_mode_mean_tokens")  # sentence-transformers 6, older
        if not mean or len(model) != 3 or type(model[2]).__name__ != "Normalize":
            raise ValueError("only a mean-pooled, normalised sentence-transformers model is exported")
        weights = Path(transformer.name_or_path) / "model.safetensors"
        stat = weights.stat()
        key = hashlib.sha256(f"{weights.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        path = cache_dir() / "onnx" / f"{Path(transformer.name_or_path).name}-{key}" / "encoder.onnx"
        if not path.exists():
            log.info("exporting the retrieval encoder to ONNX (once per machine): %s", path)
            export_graph(MeanPooled(transformer).eval(), model.tokenizer, path)
        return cls(path)

    @classmethod
    def for_model(cls, model, tokenizer, model_dir: Path) -> OnnxEncoder:
        """The session for a model folder, exporting the graph first if this version has none yet."""
        path = Path(model_dir) / ONNX_FILE
        if not path.exists():
            log.info("exporting %s to ONNX (once per model version)", model_dir)
            export_encoder(model, tokenizer, model_dir)
        return cls(path)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)})[0]
