"""Carry the packaged MiniLM to a lent GPU machine under its 64 MiB transfer limit, losslessly for BANKING77.

The weights are 91 MB, half of it the word-embedding table (30,522 rows). Only the rows of tokens that occur in
the bundled tickets and test queries are ever looked up by the intent benchmark, so ``pack`` keeps those rows
(and every other tensor) exactly; ``unpack`` rebuilds a full-size checkpoint with zeros in the unused rows. The
benchmark's numbers are the same as with the full table; the rebuilt model must not serve arbitrary text.

Usage: python benchmarks/slim_model.py pack DIR      (here)
       python benchmarks/slim_model.py unpack DIR OUT (on the device machine)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TABLE = "embeddings.word_embeddings.weight"


def pack(out: Path) -> None:
    from transformers import AutoTokenizer

    from benchmarks.common import DATA, read_csv
    from retrieval.encoder import base_model_path

    base = base_model_path()
    tokenizer = AutoTokenizer.from_pretrained(base)
    texts = [r["question"] for r in read_csv(DATA / "tickets.csv")] + [r["question"] for r in read_csv(DATA / "eval.csv")]
    used = set(tokenizer.all_special_ids)
    for ids in tokenizer(texts)["input_ids"]:
        used.update(ids)
    tensors = load_file(base / "model.safetensors")
    key = next(k for k in tensors if k.endswith(TABLE))
    rows = np.array(sorted(used), dtype=np.int64)
    slim = {k: v for k, v in tensors.items() if k != key}
    slim[key + ".rows"] = tensors[key][rows]
    slim[key + ".index"] = rows
    slim[key + ".shape"] = np.array(tensors[key].shape, dtype=np.int64)
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(base, out, ignore=shutil.ignore_patterns("model.safetensors", "*.md", "data_config.json"))
    save_file(slim, out / "slim.safetensors")
    print(f"kept {len(rows)} of {tensors[key].shape[0]} embedding rows -> {out}")


def unpack(src: Path, out: Path) -> None:
    tensors = load_file(src / "slim.safetensors")
    key = next(k[: -len(".rows")] for k in tensors if k.endswith(".rows"))
    table = np.zeros(tuple(tensors.pop(key + ".shape")), dtype=tensors[key + ".rows"].dtype)
    table[tensors.pop(key + ".index")] = tensors.pop(key + ".rows")
    tensors[key] = table
    shutil.copytree(src, out, ignore=shutil.ignore_patterns("slim.safetensors"), dirs_exist_ok=True)
    save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})


if __name__ == "__main__":
    if sys.argv[1] == "pack":
        pack(Path(sys.argv[2]))
    else:
        unpack(Path(sys.argv[2]), Path(sys.argv[3]))
