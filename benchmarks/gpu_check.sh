#!/usr/bin/env bash
# The GPU check: does stnlab train on a CUDA machine, how fast, and does a sweep run there?
#
#   bash benchmarks/gpu_check.sh          # from anywhere; about 5 minutes on one GPU, < 8 max
#
# 1. the default experiment (conf/train.yaml: RTS, ST-CNN, 30 epochs) with trainer=gpu;
# 2. training images/second of the CNN and the ST-CNN, distortions made on the device
#    (data.distort_on=device) and in 4 loader workers (data.distort_on=workers);
# 3. a 2-job multirun (model=cnn,st_cnn, 2 epochs) with trainer=gpu;
# then one summary table. Without a CUDA device it stops at once with a line that says so.
# Outputs: $STNLAB_GPU_CHECK_OUT (default outputs/gpu_check/<time>). PYTHON picks the
# interpreter (default: the repository's .venv, else python).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || PY="$(command -v python3 || command -v python)"
OUT="${STNLAB_GPU_CHECK_OUT:-$ROOT/outputs/gpu_check/$(date +%Y-%m-%d_%H-%M-%S)}"
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}"

if ! timeout 120 "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'
then
    echo "gpu_check: no CUDA device (torch.cuda.is_available() is false): run this on a" \
         "machine with an NVIDIA GPU and a CUDA build of torch"
    exit 3
fi
"$PY" -c 'import torch; print("gpu_check:", torch.cuda.get_device_name(0), "torch", torch.__version__)'
mkdir -p "$OUT"

step() { echo; echo "== gpu_check: $* ($(date +%T))"; }

step "1/3 default experiment, trainer=gpu"
timeout 240 "$PY" -m stnlab.train trainer=gpu "hydra.run.dir=$OUT/default" \
    > "$OUT/default.log" 2>&1 || { tail -30 "$OUT/default.log"; echo "gpu_check: default run FAILED"; exit 1; }

step "2/3 throughput: CNN / ST-CNN x distortions on the device / in workers"
timeout 200 "$PY" - "$OUT" > "$OUT/throughput.log" 2>&1 <<'EOF' || throughput_failed=1
"""Training images/second: the best of epochs 2-3 (epoch 1 warms up), no validation."""
import json, sys, time
from pathlib import Path

import pytorch_lightning as pl
import torch

sys.path.insert(0, "benchmarks")
from bench_framework import make_cfg  # noqa: E402
from stnlab.run.train import build_data_and_module  # noqa: E402

out = Path(sys.argv[1])


class Clock(pl.Callback):
    def __init__(self):
        self.times = []

    def on_train_epoch_start(self, trainer, pl_module):
        torch.cuda.synchronize()
        self.start = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        torch.cuda.synchronize()
        self.times.append(time.perf_counter() - self.start)


rows = []
for model in ("cnn", "st_cnn"):
    for where, workers in (("device", 0), ("workers", 4)):
        cfg = make_cfg(out / f"tp-{model}-{where}", Path("data").resolve(),  # stnlab-train's
                       [f"model={model}", "trainer=gpu", f"data.distort_on={where}",
                        f"data.num_workers={workers}"])
        data, module = build_data_and_module(cfg)
        clock = Clock()
        trainer = pl.Trainer(accelerator="gpu", devices=1, max_epochs=3, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False, limit_val_batches=0,
                             num_sanity_val_steps=0, callbacks=[clock])
        trainer.fit(module, datamodule=data)
        n = len(data.train_set)
        rows.append({"model": model, "distort_on": where, "num_workers": workers,
                     "img_per_s": round(n / min(clock.times[1:]))})
        print("gpu_check:", rows[-1], flush=True)
(out / "throughput.json").write_text(json.dumps(rows, indent=1))
EOF
grep "^gpu_check:" "$OUT/throughput.log" || true
if [[ -n "${throughput_failed:-}" || ! -s "$OUT/throughput.json" ]]; then
    tail -30 "$OUT/throughput.log"; echo "gpu_check: throughput FAILED"; exit 1
fi

step "3/3 2-job multirun, trainer=gpu"
timeout 180 "$PY" -m stnlab.train -m trainer=gpu model=cnn,st_cnn trainer.max_epochs=2 \
    "hydra.sweep.dir=$OUT/multirun" > "$OUT/multirun.log" 2>&1 \
    || { tail -30 "$OUT/multirun.log"; echo "gpu_check: multirun FAILED"; exit 1; }

step "summary"
"$PY" - "$OUT" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
print(f"{'check':34s} {'result':>44s}")
r = json.loads((out / "default" / "results.json").read_text())
print(f"{'default experiment (30 epochs)':34s} {'test error %.2f%%, fit %.0f s, %s' % (100 * r['test/error'], r['fit_time_s'], r['model']):>44s}")
for row in json.loads((out / "throughput.json").read_text()):
    name = f"{row['model']}, distort_on={row['distort_on']}"
    print(f"{name:34s} {str(row['img_per_s']) + ' img/s':>44s}")
jobs = sorted(out.glob("multirun/*/results.json"))
for path in jobs:
    j = json.loads(path.read_text())
    print(f"{'multirun ' + path.parent.name:34s} {'test error %.2f%%, %s epochs' % (100 * j['test/error'], j['epochs']):>44s}")
if len(jobs) != 2:
    sys.exit(f"gpu_check: the multirun wrote {len(jobs)} results.json, expected 2")
print(f"gpu_check: OK, outputs in {out}")
EOF
