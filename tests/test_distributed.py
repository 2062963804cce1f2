"""`accelerate launch` runs the retraining command data parallel: two local CPU processes (gloo) train one
candidate, the main process alone evaluates, publishes and promotes, and the result matches one process.

accelerate's `--cpu` flag starts one process unless MPI is installed; `--multi_gpu` spawns the processes
(torchrun) and, with no CUDA here, training joins them over gloo on the CPU (`training.train_intent.on_cpu`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from core.registry import ModelRegistry

ROOT = Path(__file__).resolve().parent.parent
# Two steps: enough to run the gradient all-reduce and the early-stopping check on both processes. Longer tiny runs
# drift apart by dropout noise alone (6 steps: 3 of 104 validation tickets between a 1- and a 2-process run).
# No mixing with the parent (tests/test_interpolate.py) and PyTorch instead of an ONNX export (tests/test_onnx.py):
# what differs between one and two processes is the training, and the two runs take 40 s less.
TRAIN = ["train", "--epochs", "1", "--max-steps", "2", "--batch-size", "16", "--followup-pairs", "0", "--no-interpolate"]


def run(cmd: list[str], home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CSBOT_HOME": str(home), "OMP_NUM_THREADS": "1", "CSBOT_ONNX": "off"}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def test_two_processes_publish_one_version_as_good_as_one_process(ready_home, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    shutil.copytree(ready_home, one)
    shutil.copytree(ready_home, two)
    versions_before = [c["version"] for c in ModelRegistry(two / "models").versions("intent")]

    single = run([sys.executable, "-m", "csbot", *TRAIN], one)
    assert single.returncode == 0, single.stderr[-3000:]
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "csbot", *TRAIN]
    double = run(launch, two)
    assert double.returncode == 0, double.stderr[-3000:]

    # One version published (the worker process published nothing), and one JSON line of output from the main process.
    versions = [c["version"] for c in ModelRegistry(two / "models").versions("intent")]
    assert len(versions) == len(versions_before) + 1
    result = json.loads(double.stdout)
    assert result["version"] == versions[-1]
    card = ModelRegistry(two / "models").card("intent", result["version"])
    training = card["training"]
    assert training["num_processes"] == 2
    assert [p.split(":")[0] for p in training["processes"]] == ["rank 0", "rank 1"]
    assert len({p.split("pid ")[1].split()[0] for p in training["processes"]}) == 2  # two real processes

    # The global batch is split, so both runs take the same steps and land within a point of each other.
    single_card = ModelRegistry(one / "models").card("intent", json.loads(single.stdout)["version"])
    assert training["steps"] == single_card["training"]["steps"] == 2
    assert abs(card["metrics"]["validation"]["accuracy"] - single_card["metrics"]["validation"]["accuracy"]) <= 0.01


def test_several_processes_need_a_ready_home(tmp_path):
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    launch += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "csbot", *TRAIN]
    empty = run(launch, tmp_path / "fresh")
    assert empty.returncode != 0
    assert "run `csbot train` once on one process first" in empty.stderr
