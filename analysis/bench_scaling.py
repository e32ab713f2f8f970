"""Data-parallel scaling of reverse-KL training steps on this machine (1 and K CPU ranks).

Launches ``torchrun --standalone --nproc-per-node K`` on this script's worker, which builds the
reverse-KL alanine-dipeptide workload of the shipped template (molecular flow, torch force
field, float32; smaller flow by default so that a CPU run takes minutes), trains ``--steps``
steps without a run directory and reports the median step time of the ranks' loops.

Strong scaling: the global batch stays ``--batch``; weak scaling: each rank draws ``--batch``.
Throughput is samples (energy evaluations) per second; efficiency is throughput(K) / (K
throughput(1)). Then a model (not a measurement) of K devices: a step time fixed + B x
per-sample, fitted to one rank at two batch sizes (or given for a GPU with ``--gpu-fixed-s`` and
``--gpu-per-sample-s``), the global batch split over K ranks, plus a ring all-reduce of the
gradient (parameters x 4 bytes, 2 (K - 1) / K of it over each link) at published NCCL bus
bandwidths.

Usage::

    python analysis/bench_scaling.py [--ranks 1 2] [--steps 30] [--batch 256] [--json-out F]
    python analysis/bench_scaling.py --buffer 32768   # a sharded TA-BG buffer on 1 and 2 ranks
    python analysis/bench_scaling.py --md 512         # replica-exchange MD replica-steps/s

``--md R``: alanine dipeptide (OBC1, torch force field, float32) on an 8-rung ladder 300..500
K with exchanges every 10 steps, R replicas in all (strong) or R per rank (weak), spread over
the ranks as ``boltzgen md --nproc K`` does; best of 3 calls of 100 steps, slowest rank.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Published all-reduce bus bandwidths (GB/s) for the model: NVLink 4 within an H100 node
#: (NCCL tests, 8 GPUs) and one 400 Gb/s NDR InfiniBand link per GPU across nodes.
BUS_BANDWIDTH_GB_S = {"H100 NVLink (one node)": 450.0, "NDR InfiniBand (across nodes)": 45.0}
#: Latency per all-reduce of a few MB (order of magnitude, NCCL ring on NVLink/IB).
ALL_REDUCE_LATENCY_S = 30e-6


def _workload(steps: int, batch: int, hidden: int):
    """This rank's ``(resolved config, target, flow)`` of the alanine-dipeptide template."""
    import torch

    from boltzgen.parallel import init_from_environment
    from boltzgen.workflow.config import parse_config_text
    from boltzgen.workflow.registry import build_model, build_target, resolve_config
    from boltzgen.workflow.templates import template_with

    text = template_with(
        "reverse-kl-alanine-dipeptide",
        [
            f"trainer.steps={steps}",
            f"trainer.batch_size={batch}",
            f"model.hidden={hidden}",
            "trainer.warmup_steps=0",
            "trainer.log_every=5",
            'device="cpu"',
        ],
    )
    resolved = resolve_config(parse_config_text(text, "bench"))
    init_from_environment(torch.device("cpu"))
    target = build_target(resolved)
    return resolved, target, build_model(resolved, target)


def worker(steps: int, batch: int, hidden: int, out: Path) -> None:
    """One rank: train ``steps`` reverse-KL steps of the alanine-dipeptide template."""
    from boltzgen.parallel import world
    from boltzgen.trainers import Trainer
    from boltzgen.workflow.registry import build_objective, train_settings

    resolved, target, model = _workload(steps, batch, hidden)
    trainer = Trainer(model, build_objective(resolved, target), train_settings(resolved, False))
    times: list[float] = []
    step = trainer._train_step
    accumulated: dict = {}

    def timed(_accumulated) -> None:
        started = time.perf_counter()
        step(accumulated)
        times.append(time.perf_counter() - started)

    trainer._train_step = timed  # the loop's own step, timed one by one
    trainer.fit(resume=False)
    if world().is_main:
        warm = sorted(times[3:])
        parameters = sum(p.numel() for p in model.parameters())
        out.write_text(
            json.dumps({"median_step_s": warm[len(warm) // 2], "parameters": parameters})
        )


def buffer_worker(samples: int, hidden: int, out: Path) -> None:
    """One rank: draw its share of a TA-BG rung buffer of ``samples`` flow samples with their
    weights at 300 K, and resample a buffer of ``samples // 4`` across the ranks (the sharded
    path of :func:`boltzgen.samplers.importance.resample_buffer`); best of 3 draws."""
    import torch

    from boltzgen.parallel import all_reduce_max, world
    from boltzgen.samplers.importance import draw_weighted_samples, resample_buffer
    from boltzgen.samplers.sharded import local_share

    _, target, model = _workload(1, 1, hidden)
    ranks = world()
    n = local_share(samples, ranks.rank, ranks.size)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        drawn = draw_weighted_samples(model, target, n, chunk_size=4096)
        _, statistics = resample_buffer(drawn, samples // 4, 1e-4)
        elapsed = torch.tensor([time.perf_counter() - started], dtype=torch.float64)
        times.append(float(all_reduce_max(elapsed)[0]))  # the slowest rank's time
    if ranks.is_main:
        out.write_text(json.dumps({"buffer_s": min(times), "ess": statistics.ess}))


def md_worker(replicas: int, steps: int, out: Path) -> None:
    """One rank of a replica-exchange run of ``replicas`` replicas in all (8 rungs): the best of
    3 times of ``steps`` steps (the slowest rank's), after 20 steps of warm-up."""
    import torch

    from boltzgen.md import ReplicaExchangeMD
    from boltzgen.molecule import Molecule
    from boltzgen.parallel import all_reduce_max, init_from_environment
    from boltzgen.samplers.ladders import geometric_ladder

    ranks, _ = init_from_environment(torch.device("cpu"))
    molecule = Molecule.from_catalog("alanine-dipeptide")
    ladder = geometric_ladder(300.0, 500.0, 8)
    md = ReplicaExchangeMD.for_molecule(molecule, ladder, replicas // 8, exchange_every=10)
    md.start(molecule.positions)
    md.advance(20)
    times = []
    for _ in range(3):
        started = time.perf_counter()
        md.advance(steps)
        elapsed = torch.tensor([time.perf_counter() - started], dtype=torch.float64)
        times.append(float(all_reduce_max(elapsed)[0]))
    if ranks.is_main:
        out.write_text(json.dumps({"md_s": min(times)}))


def md_table(ranks: list[int], replicas: int, steps: int, json_out: str | None) -> None:
    """Print (and optionally save) replica-steps/s of replica-exchange MD on each number of
    ranks, strong (``replicas`` in all) and weak (``replicas`` per rank)."""
    rows = []
    print(
        f"{'mode':6} {'ranks':>5} {'replicas':>8} {'s/step':>8} {'replica-steps/s':>16} "
        f"{'per rank':>9} {'efficiency':>10}"
    )
    for mode in ("strong", "weak"):
        for k in ranks:
            total = replicas if mode == "strong" else replicas * k
            report = launch(k, steps, 1, 1, md=total)
            rate = total * steps / report["md_s"]
            first = next((row for row in rows if row["mode"] == mode), None)
            efficiency = 1.0 if first is None else rate / (first["rate"] * k / first["ranks"])
            rows.append(
                {
                    "mode": mode,
                    "ranks": k,
                    "replicas": total,
                    "rate": rate,
                    "efficiency": efficiency,
                }
            )
            print(
                f"{mode:6} {k:5d} {total:8d} {report['md_s'] / steps:8.4f} {rate:16.0f} "
                f"{rate / k:9.0f} {efficiency:10.2f}"
            )
    if json_out:
        Path(json_out).write_text(json.dumps({"md": rows}, indent=1))


def launch(ranks: int, steps: int, batch: int, hidden: int, buffer: int = 0, md: int = 0) -> dict:
    """Run the worker on ``ranks`` ranks (one thread each); its rank-0 report."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "report.json"
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={ranks}",
                __file__,
                "--worker",
                str(out),
                f"--steps={steps}",
                f"--batch={batch}",
                f"--hidden={hidden}",
                f"--buffer={buffer}",
                f"--md={md}",
            ],
            check=True,
            env=env,
        )
        return json.loads(out.read_text())


def buffer_table(ranks: list[int], samples: int, hidden: int, json_out: str | None) -> None:
    """Print (and optionally save) the sharded-buffer timings on each number of ranks."""
    rows = []
    print(
        f"{'ranks':>5} {'samples':>8} {'buffer s':>9} {'samples/s':>10} {'speed-up':>8} {'ESS':>8}"
    )
    for k in ranks:
        report = launch(k, 1, 1, hidden, buffer=samples)
        rows.append({"ranks": k, "samples": samples, **report})
        speed_up = rows[0]["buffer_s"] / report["buffer_s"]
        print(
            f"{k:5d} {samples:8d} {report['buffer_s']:9.2f} {samples / report['buffer_s']:10.0f}"
            f" {speed_up:8.2f} {report['ess']:8.4f}"
        )
    if json_out:
        Path(json_out).write_text(json.dumps({"buffer": rows}, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument(
        "--gpu-fixed-s", type=float, help="batch-independent step time for the model, s"
    )
    parser.add_argument("--gpu-per-sample-s", type=float, help="step time per sample, s")
    parser.add_argument(
        "--buffer",
        type=int,
        default=0,
        help="instead: time a sharded TA-BG buffer of this many samples on each --ranks",
    )
    parser.add_argument(
        "--md",
        type=int,
        default=0,
        help="instead: replica-steps/s of replica-exchange MD with this many replicas "
        "(--steps steps per timing)",
    )
    parser.add_argument("--json-out")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        from boltzgen.parallel import shutdown

        if args.buffer:
            buffer_worker(args.buffer, args.hidden, Path(args.worker))
        elif args.md:
            md_worker(args.md, args.steps, Path(args.worker))
        else:
            worker(args.steps, args.batch, args.hidden, Path(args.worker))
        shutdown()  # leave the gloo group before exit (else a rank may abort at exit)
        return
    if args.buffer:
        buffer_table(args.ranks, args.buffer, args.hidden, args.json_out)
        return
    if args.md:
        md_table(args.ranks, args.md, args.steps, args.json_out)
        return
    rows = []
    for mode in ("strong", "weak"):
        for k in args.ranks:
            per_rank = args.batch // k if mode == "strong" else args.batch
            report = launch(k, args.steps, per_rank * k, args.hidden)
            throughput = per_rank * k / report["median_step_s"]
            rows.append(
                {
                    "mode": mode,
                    "ranks": k,
                    "global_batch": per_rank * k,
                    "step_ms": 1e3 * report["median_step_s"],
                    "samples_per_s": throughput,
                    "parameters": report["parameters"],
                }
            )
    base = {row["mode"]: row for row in rows if row["ranks"] == args.ranks[0]}
    print(
        f"{'mode':6} {'ranks':>5} {'batch':>6} {'step ms':>8} {'samples/s':>10} "
        f"{'per rank':>9} {'efficiency':>10}"
    )
    for row in rows:
        first = base[row["mode"]]
        row["efficiency"] = row["samples_per_s"] / (
            first["samples_per_s"] * row["ranks"] / first["ranks"]
        )
        print(
            f"{row['mode']:6} {row['ranks']:5d} {row['global_batch']:6d} {row['step_ms']:8.1f} "
            f"{row['samples_per_s']:10.1f} {row['samples_per_s'] / row['ranks']:9.1f} "
            f"{row['efficiency']:10.2f}"
        )
    parameters = rows[0]["parameters"]
    small = launch(args.ranks[0], args.steps, args.batch // 4, args.hidden)["median_step_s"]
    large = base["strong"]["step_ms"] / 1e3
    per_sample = (large - small) / (args.batch - args.batch // 4)
    fixed = args.gpu_fixed_s if args.gpu_fixed_s is not None else large - per_sample * args.batch
    per_sample = args.gpu_per_sample_s if args.gpu_per_sample_s is not None else per_sample
    print(
        f"\nmodel (not measured): step(B) = {1e3 * fixed:.2f} ms + B x {1e6 * per_sample:.2f} us "
        f"(fit to 1 rank at B = {args.batch // 4}, {args.batch}), {parameters} parameters "
        f"({4 * parameters / 1e6:.2f} MB float32 gradient); global batch {args.batch} split "
        "over K ranks, plus a ring all-reduce"
    )
    model = []
    one = fixed + per_sample * args.batch
    for link, bandwidth in BUS_BANDWIDTH_GB_S.items():
        for k in (2, 4, 8, 64):
            reduce_s = ALL_REDUCE_LATENCY_S + 2 * (k - 1) / k * 4 * parameters / (bandwidth * 1e9)
            t = fixed + per_sample * args.batch / k + reduce_s
            model.append(
                {
                    "link": link,
                    "ranks": k,
                    "step_ms": 1e3 * t,
                    "all_reduce_ms": 1e3 * reduce_s,
                    "speed_up": one / t,
                }
            )
            print(
                f"  {link:32} K={k:3d}: step {1e3 * t:8.3f} ms (all-reduce {1e3 * reduce_s:.3f} "
                f"ms), speed-up {one / t:5.2f}x"
            )
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"measured": rows, "model": model}, indent=1))


if __name__ == "__main__":
    main()
