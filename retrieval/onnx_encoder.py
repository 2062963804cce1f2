"""The intent encoder in ONNX Runtime: the same embeddings, a single query in about a third of the time on AVX2.

Measured on a 2-core AVX2 EPYC (``benchmarks/onnx_encoder.py``): 5.5 ms p50 per single query instead of 15.1 ms
in PyTorch, 319 instead of 260 sentences/s at batch 32, the same intent on 100% of the 3,080 test queries.
``CSBOT_ONNX`` = auto (default) | on | off. auto: on for a CPU without native bf16 (where the CPU has it, bf16
PyTorch is the faster path, ``retrieval.encoder.bf16_inference_supported``), never on a GPU.

The exported graph (``onnx/encoder.onnx`` inside the model's own folder, next to the PyTorch weights) is written
by the trainer when it saves a version (``training.train_intent``), or from the saved model the first time a
process serves a version without one; never downloaded. Written to a temporary name and renamed, so replicas
sharing a model folder never read half a file.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from retrieval.encoder import bf16_inference_supported

log = logging.getLogger(__name__)
ONNX_FILE = Path("onnx") / "encoder.onnx"


def onnx_wanted(device: str) -> bool:
    """Whether to serve the encoder from ONNX Runtime (``CSBOT_ONNX``; see the module docstring)."""
    mode = os.environ.get("CSBOT_ONNX", "auto").strip().lower()
    if mode not in {"on", "off", "auto"}:
        raise ValueError(f"CSBOT_ONNX must be on, off or auto, found {mode!r}")
    if mode == "off" or device != "cpu":
        return False
    return mode == "on" or not bf16_inference_supported()


class _Embed(torch.nn.Module):
    """``IntentModel.embed`` as a module with two inputs: what the graph computes."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.embed(input_ids, attention_mask)


def export_encoder(model, tokenizer, model_dir: Path) -> Path:
    """Write ``model_dir/onnx/encoder.onnx`` from a loaded IntentModel (fp32, dynamic batch and length)."""
    path = Path(model_dir) / ONNX_FILE
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
    def for_model(cls, model, tokenizer, model_dir: Path) -> OnnxEncoder:
        """The session for a model folder, exporting the graph first if this version has none yet."""
        path = Path(model_dir) / ONNX_FILE
        if not path.exists():
            log.info("exporting %s to ONNX (once per model version)", model_dir)
            export_encoder(model, tokenizer, model_dir)
        return cls(path)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)})[0]
