"""Helpers shared by the benchmarks: bundled data, result files, environment facts."""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
RESULTS = Path(__file__).resolve().parent / "results"


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def device() -> str:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})"


SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


def cpu() -> dict:
    """The processor and the flags that decide the fast paths (bf16 needs avx512_bf16 or amx_bf16)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return {
        "model": model,
        "cores": os.cpu_count(),
        "flags": [f for f in SPEED_FLAGS if f in flags],
        "CSBOT_BF16": os.environ.get("CSBOT_BF16", "auto"),
        "CSBOT_ONNX": os.environ.get("CSBOT_ONNX", "auto"),
    }


def commit() -> str:
    """The code a long run measured (runs are made from a frozen checkout so every seed runs the same code).

    ``CSBOT_COMMIT`` names it where the checkout has no git history (a copy sent to a lent GPU machine)."""
    if os.environ.get("CSBOT_COMMIT"):
        return os.environ["CSBOT_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    result = {**result, "device": device(), "cpu": cpu(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    path = RESULTS / name
    path.write_text(json.dumps(result, indent=2))
    return path


def reference_ceiling(texts: list[str]) -> float:
    """Issue 17's yardstick for this CPU: sentences/s of sentence-transformers' ``encode`` (PyTorch fp32, batch 32)
    of the packaged encoder over ``texts``. A throughput divided by it compares across processors."""
    import gc

    import torch
    from sentence_transformers import SentenceTransformer

    from retrieval.encoder import base_model_path

    model = SentenceTransformer(str(base_model_path()), device="cpu")
    with torch.autocast("cpu", enabled=False):
        model.encode(texts[:64], batch_size=32)
        started = time.perf_counter()
        model.encode(texts, batch_size=32)
        rate = len(texts) / (time.perf_counter() - started)
    del model
    gc.collect()
    return rate
