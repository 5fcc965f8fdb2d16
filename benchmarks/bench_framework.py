"""The framework's cost over a bare PyTorch loop: same model, data, batch size and steps.

    OMP_NUM_THREADS=2 PYTHONPATH=src python benchmarks/bench_framework.py            # 3 rounds
    PYTHONPATH=src python benchmarks/bench_framework.py --epochs 2 --rounds 3 -- model=cnn
    PYTHONPATH=src python benchmarks/bench_framework.py --epochs 30 --rounds 4 --side-by-side

``framework``: ``stnlab.run.train.train(cfg)`` on the default experiment (``conf/train.yaml``
composed with Hydra's compose API; extra arguments after ``--`` are overrides): Lightning,
torchmetrics, the CSV logger, both checkpoints, the ``st/`` diagnostics, the gallery, the
crop IoU, the LR monitor and the test of the best checkpoint. ``bare``: the same DataModule
(the same seeded training stream, distorted the same way), net, optimiser groups, one-cycle
schedule and label-smoothed loss in a plain loop, with a validation pass per epoch and the
test pass at the end, computed as plain sums. Rounds alternate the two so that drift in the
machine's speed hits both; the ratio is that of the median wall times (min beside it).

The warm-up first keeps freed memory in every process, as ``stnlab-train`` does by default
(``keep_freed_memory=true``, ``stnlab.cli.allocator``): both loops then run under that policy.

Images/second counts training images only (steps x batch size) over the whole wall time of
a run (fit, validation, test), so the ratio is the whole run's. Beside the wall times: the
process's CPU time (``time.process_time``, all its threads), which time stolen by other
tenants of a shared machine does not inflate, and the median of the per-round ratios.

``--side-by-side``: two processes of one thread each (one a core, as the studies run) start
each round together, one running ``bare`` and the other ``framework``, and swap every round.
A shared machine's speed drifts by 20% over minutes; both loops of a pair see the same drift
and the same contention, so the median of the pairs' ratios is the figure to quote. (After the
faster one ends the slower one runs alone, a little faster: this flatters the slower loop.)
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from queue import Empty

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import open_dict

from stnlab.cli.allocator import keep_freed_memory
from stnlab.config import CONFIG_DIR
from stnlab.run.train import build_data_and_module, train
from stnlab.spatial import localisation_parameters


def make_cfg(root: Path, data_dir: Path, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="train", return_hydra_config=True,
                      overrides=[f"paths.root_dir={root}", f"paths.output_dir={root / 'out'}",
                                 f"paths.data_dir={data_dir}", *overrides])
    HydraConfig().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def bare(cfg) -> dict:
    """The plain loop; returns training steps and images."""
    torch.manual_seed(cfg.seed)
    data, module = build_data_and_module(cfg)
    data.setup("fit")
    net = module.net
    loc = list(localisation_parameters(net))
    loc_ids = {id(p) for p in loc}
    groups = [{"params": [p for p in net.parameters() if id(p) not in loc_ids]}]
    if loc:
        groups.append({"params": loc})
    opt = instantiate(cfg.optimizer)(groups)
    if loc:
        opt.param_groups[1]["lr"] *= module.loc_lr_mult
    epochs = int(cfg.trainer.max_epochs)
    loader = data.train_dataloader()
    steps_per_epoch = len(loader)
    sched = None
    if cfg.get("scheduler"):
        sched = instantiate(cfg.scheduler)(opt, total_steps=max(10, epochs * steps_per_epoch),
                                           max_lr=[g["lr"] for g in opt.param_groups])
    smoothing = float(getattr(module, "label_smoothing", 0.0))
    steps = images = 0

    def evaluate(dl) -> float:
        net.eval()
        correct = total = 0
        with torch.no_grad():
            for x, y in dl:
                correct += int((net(x).argmax(1) == y).sum())
                total += len(y)
        net.train()
        return correct / total

    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            x, y = data.distort_train_batch(batch, epoch)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x), y, label_smoothing=smoothing)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            steps += 1
            images += len(y)
        evaluate(data.val_dataloader())
    evaluate(data.test_dataloader())
    return {"steps": steps, "images": images}


def framework(cfg) -> dict:
    results = train(cfg)
    return {"steps": results["global_step"],
            "images": results["global_step"] * int(cfg.data.batch_size)}


MAKE = {"bare": bare, "framework": framework}


def warm_up(root: Path, data_dir: Path, overrides: list[str]) -> None:
    """stnlab-train's allocator policy, then one epoch through the framework: the imports and
    the fixed sets' cache, before timing."""
    keep_freed_memory()
    short = [o for o in overrides if not o.startswith("trainer.max_epochs=")]
    framework(make_cfg(root, data_dir, [*short, "trainer.max_epochs=1"]))


def timed(name: str, cfg) -> tuple[dict, float, float]:
    """``(counts, wall s, cpu s)`` of one run of loop ``name``."""
    start, start_cpu = time.perf_counter(), time.process_time()
    counts = MAKE[name](cfg)
    return counts, time.perf_counter() - start, time.process_time() - start_cpu


def report(r: int, name: str, counts: dict, wall: float, cpu: float) -> None:
    print(f"round {r} {name:9s} {wall:6.2f} s  cpu {cpu:6.2f} s  "
          f"{counts['images'] / wall:7.0f} img/s", flush=True)


def side_worker(slot: int, rounds: int, work: Path, overrides: list[str], barrier,
                queue) -> None:
    """One of the two side-by-side processes: ``bare`` and ``framework`` in turn, the other
    process running the other loop in the same round."""
    torch.set_num_threads(1)
    data_dir = work / "data"
    warm_up(work / f"warmup{slot}", data_dir, overrides)
    for r in range(rounds):
        name = ("bare", "framework")[(r + slot) % 2]
        root = work / f"{name}{r}"
        cfg = make_cfg(root, data_dir, overrides)
        barrier.wait()
        counts, wall, cpu = timed(name, cfg)
        shutil.rmtree(root, ignore_errors=True)
        queue.put((r, name, counts, wall, cpu))


def side_by_side(args, work: Path, overrides: list[str]) -> dict[str, list]:
    """Runs the two worker processes; returns per loop the ``(round, counts, wall, cpu)``."""
    warm_up(work / "warmup", work / "data", overrides)
    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=side_worker, args=(slot, args.rounds, work, overrides,
                                                    barrier, queue)) for slot in (0, 1)]
    for proc in procs:
        proc.start()
    runs: dict[str, list] = {"bare": [], "framework": []}
    while sum(map(len, runs.values())) < 2 * args.rounds:
        try:
            r, name, counts, wall, cpu = queue.get(timeout=10)
        except Empty:
            if any(proc.exitcode for proc in procs):
                break  # a worker died: its partner waits at the barrier for ever
            continue
        runs[name].append((r, counts, wall, cpu))
        report(r, name, counts, wall, cpu)
    if any(proc.exitcode for proc in procs):
        for proc in procs:
            proc.kill()
        raise SystemExit(f"a side-by-side worker failed (exit codes "
                         f"{[proc.exitcode for proc in procs]})")
    for proc in procs:
        proc.join()
    return {name: sorted(v, key=lambda t: t[0]) for name, v in runs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: OMP_NUM_THREADS or torch's own)")
    parser.add_argument("--side-by-side", action="store_true",
                        help="both loops at once, one process a core, swapped every round")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of both runs")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_framework-"))
    data_dir = work / "data"
    overrides = [f"trainer.max_epochs={args.epochs}", *args.overrides]
    load = os.getloadavg()
    threads = 1 if args.side_by_side else torch.get_num_threads()
    print(f"torch {torch.__version__}, {threads} threads, "
          f"{'side by side, ' if args.side_by_side else ''}"
          f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, overrides {overrides}")
    times: dict[str, list[float]] = {k: [] for k in MAKE}
    cpu: dict[str, list[float]] = {k: [] for k in MAKE}
    counts: dict[str, dict] = {}
    try:
        if args.side_by_side:
            for name, runs in side_by_side(args, work, overrides).items():
                for _, counts[name], wall, used in runs:
                    times[name].append(wall)
                    cpu[name].append(used)
        else:
            warm_up(work / "warmup", data_dir, overrides)
            for r in range(args.rounds):
                for name in MAKE:
                    root = work / f"{name}{r}"
                    counts[name], wall, used = timed(name, make_cfg(root, data_dir, overrides))
                    times[name].append(wall)
                    cpu[name].append(used)
                    shutil.rmtree(root, ignore_errors=True)
                    report(r, name, counts[name], wall, used)
    finally:
        GlobalHydra.instance().clear()
        shutil.rmtree(work, ignore_errors=True)
    if counts["bare"]["steps"] != counts["framework"]["steps"]:
        raise SystemExit(f"step counts differ: {counts}")
    print(f"\n{'loop':9s} {'steps':>5s} {'median s':>8s} {'min s':>6s} {'cpu s':>6s} "
          f"{'img/s':>7s}")
    for name in MAKE:
        med = statistics.median(times[name])
        print(f"{name:9s} {counts[name]['steps']:5d} {med:8.2f} {min(times[name]):6.2f} "
              f"{statistics.median(cpu[name]):6.2f} {counts[name]['images'] / med:7.0f}")

    def ratio(t: dict[str, list[float]], of=statistics.median) -> float:
        return of(t["framework"]) / of(t["bare"])

    rounds = [f / b for f, b in zip(times["framework"], times["bare"], strict=True)]
    load = os.getloadavg()
    print(f"ratio framework/bare, wall: {ratio(times):.3f} (of medians), {ratio(times, min):.3f} "
          f"(of minima), {statistics.median(rounds):.3f} (median of rounds: "
          f"{' '.join(f'{x:.3f}' for x in rounds)}); cpu: {ratio(cpu):.3f} (of medians); "
          f"load after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    main()
