"""Issue 17 lever: the intent encoder in ONNX Runtime (fp32, and int8 per channel) against PyTorch, on this CPU.

Exports the serving intent model's encoder (``IntentModel.embed``: BERT, mean pool, L2 norm) with
``torch.onnx.export`` and measures, on the 3,080 BANKING77 test queries:
- throughput at batch 32 (queries in file order, and length-sorted so a batch pads to its own longest),
- single-query latency (p50/p95 over 300 queries, warm),
- agreement: the intent from each path against PyTorch fp32, and the cosine of the embeddings,
- the reference ceiling of the issue: sentence-transformers' ``encode`` of the packaged encoder, batch 32.
Needs the bench extra ``onnxruntime`` (``pip install -e '.[bench]'``). Nothing is changed in serving.

Usage: python benchmarks/onnx_encoder.py --model var/models/intent/v0002
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import DATA, read_csv, write_result  # noqa: E402
from retrieval.intent import MAX_TOKENS, IntentModel  # noqa: E402


class Embed(torch.nn.Module):
    def __init__(self, model: IntentModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.embed(input_ids, attention_mask)


def export(model: IntentModel, tokenizer, path: Path) -> None:
    sample = tokenizer(["how long does a transfer take?", "hi"], padding=True, return_tensors="pt")
    torch.onnx.export(
        Embed(model).eval(),
        (sample["input_ids"], sample["attention_mask"]),
        str(path),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding"],
        dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}, "embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


def batches(texts: list[str], size: int, sort: bool) -> list[list[int]]:
    order = sorted(range(len(texts)), key=lambda i: len(texts[i])) if sort else list(range(len(texts)))
    return [order[i : i + size] for i in range(0, len(order), size)]


def run_all(embed_fn, tokenizer, texts: list[str], sort: bool) -> tuple[np.ndarray, float]:
    out = np.zeros((len(texts), 384), dtype=np.float32)
    started = time.perf_counter()
    for idx in batches(texts, 32, sort):
        enc = tokenizer([texts[i] for i in idx], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="np")
        out[idx] = embed_fn(enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64))
    return out, len(texts) / (time.perf_counter() - started)


def single_latency(embed_fn, tokenizer, texts: list[str]) -> dict:
    times = []
    for text in texts:
        started = time.perf_counter()
        enc = tokenizer([text], truncation=True, max_length=MAX_TOKENS, return_tensors="np")
        embed_fn(enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64))
        times.append((time.perf_counter() - started) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p95_ms": round(times[int(0.95 * len(times))], 2)}


def main() -> None:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from retrieval.encoder import base_model_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a saved intent model folder")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", default="onnx_encoder.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    texts = [r["question"] for r in read_csv(DATA / "eval.csv")]
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = IntentModel.from_pretrained(args.model).eval()
    weight = torch.nn.functional.normalize(model.classifier.weight.detach().float(), dim=-1).numpy()
    folder = Path(tempfile.mkdtemp(prefix="csbot-onnx-"))
    export(model, tokenizer, folder / "encoder.onnx")
    # int8 done carefully (the lever): per channel, weights only (embeddings, attention scores, pooling and
    # the head stay float); all the layers' MatMuls, then only the feed-forward ones, then only their input
    # projections (the output projections read GELU activations with outliers, the usual int8 trouble).
    graph = onnx.load(str(folder / "encoder.onnx"))
    weights = {init.name for init in graph.graph.initializer}
    matmuls = [n.name for n in graph.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    feed_forward = [n for n in matmuls if "/intermediate/" in n or ("/output/dense" in n and "attention" not in n)]
    int8_variants = {"all": matmuls, "feed_forward": feed_forward, "feed_forward_in": [n for n in feed_forward if "/intermediate/" in n]}
    for name, nodes in int8_variants.items():
        quantize_dynamic(
            str(folder / "encoder.onnx"),
            str(folder / f"encoder.int8_{name}.onnx"),
            per_channel=True,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=nodes,
        )

    def torch_fn(ids, mask):
        with torch.inference_mode():
            return model.embed(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()

    def ort_fn(path: Path):
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as serving runs it
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return lambda ids, mask: session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    reference = SentenceTransformer(str(base_model_path()), device="cpu")
    reference.encode(texts[:64], batch_size=32)
    started = time.perf_counter()
    reference.encode(texts, batch_size=32)
    ceiling = len(texts) / (time.perf_counter() - started)
    print(f"reference ceiling (sentence-transformers fp32, batch 32): {ceiling:.1f} sentences/s", flush=True)

    paths = {"pytorch_fp32": torch_fn, "onnxruntime_fp32": ort_fn(folder / "encoder.onnx")}
    paths |= {f"onnxruntime_int8_{name}": ort_fn(folder / f"encoder.int8_{name}.onnx") for name in int8_variants}
    base_vectors = None
    result: dict = {"model": str(args.model), "queries": len(texts), "threads": args.threads, "reference_sentences_per_s": round(ceiling, 1), "paths": {}}
    for name, fn in paths.items():
        run_all(fn, tokenizer, texts[:128], False)  # warm-up
        vectors, rate = run_all(fn, tokenizer, texts, False)
        _, rate_sorted = run_all(fn, tokenizer, texts, True)
        latency = single_latency(fn, tokenizer, texts[:300])
        intents = (vectors @ weight.T).argmax(1)
        if base_vectors is None:
            base_vectors, base_intents = vectors, intents
        row = {
            "quantised_matmuls": len(int8_variants[name.removeprefix("onnxruntime_int8_")]) if "int8" in name else 0,
            "sentences_per_s_batch32": round(rate, 1),
            "sentences_per_s_batch32_length_sorted": round(rate_sorted, 1),
            "ratio_to_reference_sorted": round(rate_sorted / ceiling, 3),
            "single_query": latency,
            "intent_agreement_with_pytorch_fp32": round(float((intents == base_intents).mean()), 4),
            "min_cosine_to_pytorch_fp32": round(float((vectors * base_vectors).sum(1).min()), 4),
            "mean_cosine_to_pytorch_fp32": round(float((vectors * base_vectors).sum(1).mean()), 5),
        }
        result["paths"][name] = row
        print(name, row, flush=True)
    print(f"wrote {write_result(args.out, result)}")


if __name__ == "__main__":
    main()
