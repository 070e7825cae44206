#!/usr/bin/env bash
# The CUDA path in one command, for whoever has a GPU (nothing else in the project needs one):
#   bash benchmarks/gpu_check.sh [OUT]        (default OUT: runs/gpu_check)
# 1. the test suite; 2. a short run of the RefCOCO config (AMP bf16, channels_last, a tiny random
# Swin through hf:, the refer-format test fixture, simulated priors, streamed samples assembled by
# 2 loader workers into pinned memory) on cuda; 3. the loop speed
# benchmark (threshold vs l2l) on cuda; 4. the real-size path (benchmarks/bench_gpu_path.py):
# refcoco_5pct at 480 px on the refer-layout synthetic set with Swin-B and BERT-base built from
# their configs (random weights), AMP on: loop steps per second, the segmenter update's time and
# peak GPU memory. Writes OUT/gpu_check.json with what it measured.
# CPU dry run (same code path, toy sizes; the committed benchmarks/results/gpu_check_cpu_dryrun.json):
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_SKIP_TESTS=1 GPU_CHECK_LOOP_STEPS=64 bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu_check}
PY=${PYTHON:-.venv/bin/python}
DEVICE=${GPU_CHECK_DEVICE:-cuda}     # cpu: a dry run of this script on a machine without a GPU
LOOP_STEPS=${GPU_CHECK_LOOP_STEPS:-256}
if [ "$DEVICE" = cuda ]; then   # the real sizes
  SIZE=${GPU_CHECK_IMAGE_SIZE:-480} BACKBONES=${GPU_CHECK_BACKBONES:-real}
  IMAGES=${GPU_CHECK_IMAGES:-300} THREADS=${GPU_CHECK_THREADS:-4}
else                            # the dry run: toy sizes that finish in minutes on a laptop CPU
  SIZE=${GPU_CHECK_IMAGE_SIZE:-64} BACKBONES=${GPU_CHECK_BACKBONES:-tiny}
  IMAGES=${GPU_CHECK_IMAGES:-100} THREADS=${GPU_CHECK_THREADS:-1}
fi
mkdir -p "$OUT"
export OMP_WAIT_POLICY=PASSIVE L2L_CACHE_DIR="$OUT/cache"
if [ "$DEVICE" = cuda ]; then
  "$PY" -c "import torch, sys; ok = torch.cuda.is_available(); print('cuda', ok, torch.cuda.get_device_name(0) if ok else ''); sys.exit(0 if ok else 1)"
fi
t0=$(date +%s)
if [ -z "${GPU_CHECK_SKIP_TESTS:-}" ]; then
  "$PY" -m pytest -x -q -p no:warnings 2>&1 | tail -3 | tee "$OUT/tests.log"
else
  echo "tests skipped" > "$OUT/tests.log"
fi
t_tests=$(( $(date +%s) - t0 ))
PYTHONPATH=tests "$PY" - "$OUT" <<'PY'
import sys
from pathlib import Path
from refer_fixtures import write_refer_fixture
from transformers import SwinConfig, SwinModel
out = Path(sys.argv[1])
write_refer_fixture(out / "refer")
SwinModel(SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1],
                     num_heads=[1, 1, 1, 1], window_size=2)).save_pretrained(out / "swin")
PY
t0=$(date +%s)
"$PY" -m experiments.run --config refcoco_5pct --data-root "$OUT/refer" --out "$OUT/refcoco_run" \
  --device "$DEVICE" --label-ratio 0.5 --overwrite --no-progress "split_dir=\"$OUT/splits\"" \
  'prior="simulated/qwen2.5-vl-7b"' "segmenter.backbone=\"hf:$OUT/swin\"" 'segmenter.text_encoder="minilm"' \
  segmenter.freeze_text=true segmenter.image_size=64 segmenter.channels_last=true \
  'env.reward="hybrid"' env.calibration_every=0 env.probe_size=0 env.grid_size=8 \
  warmup_steps=8 loop_steps=32 chunk_steps=16 eval_every=0 log_images=0 "threads=$THREADS" num_workers=2 \
  | tee "$OUT/refcoco_run.log"
t_run=$(( $(date +%s) - t0 ))
"$PY" benchmarks/bench_loop_speed.py --loop-steps "$LOOP_STEPS" --repeats 1 --threads "$THREADS" "device=\"$DEVICE\"" \
  --out "$OUT/loop_speed" | tail -6 | tee "$OUT/loop_speed.log"
"$PY" benchmarks/bench_gpu_path.py --device "$DEVICE" --images "$IMAGES" --image-size "$SIZE" \
  --backbones "$BACKBONES" --loop-steps "$LOOP_STEPS" --threads "$THREADS" --work "$OUT/gpu_path" \
  --out "$OUT/gpu_path.json" | tee "$OUT/gpu_path.log"
GPU_CHECK_COMMAND="$(env | grep -o '^GPU_CHECK_[A-Z_]*=[^ ]*' | sort | tr '\n' ' ')bash benchmarks/gpu_check.sh $OUT" \
"$PY" - "$OUT" "$t_tests" "$t_run" "$DEVICE" <<'PY'
import json, os, sys, torch
from pathlib import Path
out = Path(sys.argv[1])
res = json.loads((out / "refcoco_run" / "results.json").read_text())
cuda = sys.argv[4].startswith("cuda") and torch.cuda.is_available()
report = {"command": os.environ["GPU_CHECK_COMMAND"],
          "device": torch.cuda.get_device_name(0) if cuda else "cpu", "tests_s": int(sys.argv[2]),
          "refcoco_fixture_run_s": int(sys.argv[3]), "refcoco_fixture_val_mIoU": res["metrics"]["val"]["mIoU"],
          "amp": res["config"]["segmenter"]["amp"], "tests_tail": (out / "tests.log").read_text().strip(),
          "loop_speed_tail": (out / "loop_speed.log").read_text().strip(),
          "real_size_path": json.loads((out / "gpu_path.json").read_text())}
(out / "gpu_check.json").write_text(json.dumps(report, indent=2))
print(json.dumps(report, indent=2))
PY
