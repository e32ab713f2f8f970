"""Benchmark one reverse-KL training step of boltzgen's coupling flow against nflows' RQ flow.

A step is: ``x, log_q = model.sample_and_log_prob(batch)``, the reduced energy u(x) of a
diagonal Gaussian target, ``loss = mean(log_q + u)``, backward, Adam step. Both flows have the
same size: rational-quadratic spline couplings with alternating masks, ``bins`` bins on
[-5, 5], residual conditioners of width ``hidden`` with 2 blocks (nflows' ``ResidualNet``;
ours with ``resnet=True, depth=2``).

CPU (always): 66 features, 8 couplings, batch 1024. GPU (when CUDA is available): 60 features,
16 couplings, batches 256/1024/4096; ours eager, ours under ``torch.compile`` (if it compiles),
and nflows. Reports the median milliseconds per step after warm-up, parameter counts, the
matrix-product FLOPs of one step (``torch.utils.flop_counter``: forward, backward; the splines'
elementwise work is not counted) and the rate they are done at, beside the machine's rate for
one GEMM of the conditioners' shape (batch x hidden times hidden x hidden) measured in the same
run: the fraction of that rate a step reaches, and the time its matrix products alone would take.

Usage::

    python analysis/bench_flow_step.py --json-out bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from boltzgen.energy.base import Energy
from boltzgen.flows import CouplingFlow, NflowsAdapter
from boltzgen.flows.nflows_adapter import nflows_rq_coupling_flow


class DiagonalGaussian(Energy):
    """u(x) = 0.5 sum_i ((x_i - mean_i) / std_i)^2, shape ``(n, dim) -> (n,)``; a cheap target."""

    def __init__(self, dim: int) -> None:
        super().__init__((dim,))
        generator = torch.Generator().manual_seed(1)
        self.register_buffer("mean", torch.randn(dim, generator=generator))
        self.register_buffer("std", 0.5 + torch.rand(dim, generator=generator))

    def _energy(self, x: Tensor) -> Tensor:
        return 0.5 * ((x - self.mean) / self.std).square().sum(dim=-1)


def reverse_kl_step(
    sample_and_log_prob: Callable[[int], tuple[Tensor, Tensor]],
    parameters: Iterable[nn.Parameter],
    target: Energy,
    batch: int,
) -> Callable[[], Tensor]:
    """A closure running one Adam step on mean(log q(x) + u(x)), x ~ q (batch samples)."""
    optimizer = torch.optim.Adam(parameters, lr=1e-4)

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        x, log_q = sample_and_log_prob(batch)
        loss = (log_q + target.energy(x)).mean()
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step


def median_ms(
    steps: dict[str, Callable[[], Tensor]], n_steps: int, warmup: int, device: torch.device
) -> dict[str, tuple[float, float]]:
    """Median wall time and median process CPU time per step, in milliseconds, of each
    labelled step function.

    The functions are timed in turns (A, B, A, B, ...) so that a shared, busy machine slows all
    of them alike; the CPU time (all threads of this process) is insensitive to other
    processes. CUDA is synchronised around every timed call.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    wall: dict[str, list[float]] = {label: [] for label in steps}
    cpu: dict[str, list[float]] = {label: [] for label in steps}
    for _ in range(n_steps):
        for label, step in steps.items():
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            wall[label].append(1e3 * (time.perf_counter() - start))
            cpu[label].append(1e3 * (time.process_time() - start_cpu))
    return {
        label: (statistics.median(wall[label]), statistics.median(cpu[label])) for label in steps
    }


def step_flops(step: Callable[[], Tensor]) -> int:
    """Matrix-product FLOPs of one call of ``step`` (forward and backward)."""
    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def matmul_gflops(batch: int, hidden: int, device: torch.device, seconds: float = 1.0) -> float:
    """GFLOP/s of ``(batch x hidden) @ (hidden x hidden)`` in float32 on ``device``."""
    a = torch.randn(batch, hidden, device=device)
    b = torch.randn(hidden, hidden, device=device)
    for _ in range(3):
        a @ b
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        calls += 1
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return 2 * batch * hidden * hidden * calls / (time.perf_counter() - start) / 1e9


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(
    kind: str, dim: int, layers: int, hidden: int, bins: int
) -> CouplingFlow | NflowsAdapter:
    """``ours`` or ``nflows``: a coupling flow of the benchmark's size (float32)."""
    if kind == "nflows":
        return nflows_rq_coupling_flow(dim, layers, hidden, n_blocks=2, bins=bins, tail_bound=5.0)
    return CouplingFlow(dim, n_layers=layers, hidden=hidden, depth=2, bins=bins, resnet=True)


def _compiled(function: Callable, compiled: bool | str) -> Callable:
    """``function``, or ``torch.compile(function)`` in the mode ``compiled`` names."""
    if compiled is False:
        return function
    return torch.compile(function, mode=None if compiled is True else compiled)


def compare(
    cases: dict[str, tuple[str, bool | str]],
    dim: int,
    layers: int,
    batch: int,
    device: torch.device,
    args: argparse.Namespace,
) -> list[dict[str, object]]:
    """Time the reverse-KL step of each case ``label: (kind, compiled)`` side by side;
    ``compiled`` is ``False``, ``True`` (``torch.compile`` of sampling, default mode) or a
    ``torch.compile`` mode such as ``"reduce-overhead"`` (CUDA graphs)."""
    torch.manual_seed(0)
    target = DiagonalGaussian(dim).to(device)
    steps, counts, flops, rows = {}, {}, {}, []
    for label, (kind, compiled) in cases.items():
        model = build(kind, dim, layers, args.hidden, args.bins).to(device)
        sample = model.sample_and_log_prob
        step = reverse_kl_step(_compiled(sample, compiled), model.parameters(), target, batch)
        try:
            step()  # compiles, if asked to
        except Exception as error:  # a torch.compile failure is reported, not fatal
            rows.append(
                {
                    "device": device.type,
                    "model": label,
                    "dim": dim,
                    "layers": layers,
                    "batch": batch,
                    "error": f"{type(error).__name__}: {error}"[:200],
                }
            )
            continue
        steps[label], counts[label] = step, parameter_count(model)
        flops[label] = step_flops(step)
    rate = matmul_gflops(batch, args.hidden, device)
    for label, (ms, cpu_ms) in median_ms(steps, args.steps, args.warmup, device).items():
        achieved = flops[label] / ms / 1e6
        rows.append(
            {
                "device": device.type,
                "model": label,
                "dim": dim,
                "layers": layers,
                "batch": batch,
                "params": counts[label],
                "ms_per_step": round(ms, 2),
                "cpu_ms_per_step": round(cpu_ms, 2),
                "gflop_per_step": round(flops[label] / 1e9, 3),
                "gflops": round(achieved, 2),
                "matmul_gflops": round(rate, 2),
                "fraction_of_matmul_rate": round(achieved / rate, 3),
                "matmul_only_ms": round(flops[label] / rate / 1e6, 2),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per case")
    parser.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--bins", type=int, default=8)
    parser.add_argument("--cpu-dim", type=int, default=66)
    parser.add_argument("--cpu-layers", type=int, default=8)
    parser.add_argument("--cpu-batch", type=int, default=1024)
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-gpu", action="store_true", help="skip the CUDA cases")
    parser.add_argument("--json-out", help="write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = compare(
        {"ours": ("ours", False), "nflows": ("nflows", False)},
        args.cpu_dim,
        args.cpu_layers,
        args.cpu_batch,
        torch.device("cpu"),
        args,
    )
    if torch.cuda.is_available() and not args.no_gpu:
        gpu_cases = {
            "ours": ("ours", False),
            "ours+compile": ("ours", True),
            "nflows": ("nflows", False),
        }
        for batch in (256, 1024, 4096):
            rows += compare(gpu_cases, 60, 16, batch, torch.device("cuda"), args)

    machine = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    print(f"torch {machine['torch']}, {machine['threads']} threads, cuda: {machine['cuda']}")
    print(
        f"{'device':<7} {'model':<13} {'dim':>4} {'layers':>6} {'batch':>6} {'params':>10} "
        f"{'ms/step':>9} {'cpu ms':>9} {'GFLOP':>7} {'GFLOP/s':>8} {'GEMM GFLOP/s':>12} "
        f"{'fraction':>8} {'GEMM-only ms':>12}"
    )
    for row in rows:
        tail = (
            f"{row['params']:>10} {row['ms_per_step']:>9.1f} {row['cpu_ms_per_step']:>9.1f} "
            f"{row['gflop_per_step']:>7.2f} {row['gflops']:>8.1f} {row['matmul_gflops']:>12.1f} "
            f"{row['fraction_of_matmul_rate']:>8.2f} {row['matmul_only_ms']:>12.1f}"
            if "error" not in row
            else f"  failed: {row['error']}"
        )
        print(
            f"{row['device']:<7} {row['model']:<13} {row['dim']:>4} {row['layers']:>6} "
            f"{row['batch']:>6} {tail}"
        )
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump(
                {"machine": machine, "steps": args.steps, "warmup": args.warmup, "results": rows},
                handle,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
