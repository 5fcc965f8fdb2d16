"""Where a framework run's time goes, hook to hook: the seconds between consecutive Lightning
hooks, summed per pair (``on_train_batch_start -> on_train_batch_end`` is the training steps;
``on_train_batch_end -> on_train_batch_start`` the loop, data and distortion between them).

    OMP_NUM_THREADS=1 PYTHONPATH=src python benchmarks/hook_times.py --epochs 10 [-- overrides]

A recording callback is put first and last in the trainer's callbacks, so a hook's own
callbacks fall between its two records (``X -> X``). Work in other threads falls outside every
pair: the last line gives the CPU seconds the run's other threads took (process CPU time less
the main thread's; Lightning's default rich progress bar, ``callbacks.progress_bar=null``,
0.41-0.59 s in 10 epochs). Used for docs/performance.md ("Framework overhead").
"""

from __future__ import annotations

import argparse
import collections
import shutil
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
from bench_framework import framework, make_cfg, warm_up

HOOKS = ["setup", "on_fit_start", "on_sanity_check_start", "on_sanity_check_end",
         "on_train_start", "on_train_epoch_start", "on_train_batch_start", "on_train_batch_end",
         "on_validation_start", "on_validation_epoch_start", "on_validation_batch_start",
         "on_validation_batch_end", "on_validation_epoch_end", "on_validation_end",
         "on_train_epoch_end", "on_train_end", "on_fit_end", "on_test_start",
         "on_test_batch_start", "on_test_batch_end", "on_test_end", "teardown"]


class HookClock(pl.Callback):
    """Appends ``(hook, time)`` to ``events`` at every hook in ``HOOKS``."""

    def __init__(self, events: list):
        self.events = events


for _hook in HOOKS:
    setattr(HookClock, _hook, lambda self, *a, _h=_hook, **k: self.events.append(
        (_h, time.perf_counter())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hook_times-"))
    overrides = [f"trainer.max_epochs={args.epochs}", *args.overrides]
    events: list[tuple[str, float]] = []
    init = pl.Trainer.__init__

    def with_clocks(self, *a, **k):
        k["callbacks"] = [HookClock(events), *(k.get("callbacks") or []), HookClock(events)]
        init(self, *a, **k)

    try:
        warm_up(work / "warmup", work / "data", overrides)
        pl.Trainer.__init__ = with_clocks
        start, cpu, main_cpu = time.perf_counter(), time.process_time(), time.thread_time()
        framework(make_cfg(work / "run", work / "data", overrides))
        end = time.perf_counter()
        other_cpu = (time.process_time() - cpu) - (time.thread_time() - main_cpu)
    finally:
        pl.Trainer.__init__ = init
        shutil.rmtree(work, ignore_errors=True)
    total, count = collections.defaultdict(float), collections.Counter()
    prev = ("start", start)
    for hook, t in [*events, ("end", end)]:
        key = f"{prev[0]} -> {hook}"
        total[key] += t - prev[1]
        count[key] += 1
        prev = (hook, t)
    print(f"framework run: {end - start:.2f} s, {args.epochs} epochs")
    for key, seconds in sorted(total.items(), key=lambda kv: -kv[1])[:25]:
        print(f"{seconds:8.3f} s {count[key]:5d}x  {key}")
    print(f"CPU in other threads than the loop's: {other_cpu:.3f} s")


if __name__ == "__main__":
    main()
