"""Benchmark VAN sampling and training steps of boltzgen's MADE and PixelCNN against a naive
reference written here (sequential sampling with a full network pass per site).

For each model (MADE over N = L^2 spins, PixelCNN over L x L) on the 2-D Ising torus at beta_c:

- ``sample``: samples/s of the model's cached sampler (``model.sample``) and of the reference
  :func:`reference_sample` (N full forward passes, every site's logits recomputed); both consume
  the same uniforms, and the script checks that they return the same states;
- ``step``: training steps/s of the library's VAN step (``ReverseKLScore.loss`` = cached
  sampling + one log_prob pass + the leave-one-out surrogate, backward, Adam) and of
  :func:`reference_step` (reference sampling, the same surrogate written out, backward, Adam).

Wall times are medians over ``--repeats`` timed calls after one warm-up call, CUDA synchronised.

Usage::

    python analysis/bench_autoregressive.py --sizes 16 --batch 1024 --json-out bench.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor

from boltzgen.energy.lattice import ISING_CRITICAL_BETA, IsingModel2D
from boltzgen.models import MADE, PixelCNN
from boltzgen.models.autoregressive import AutoregressiveModel
from boltzgen.trainers.discrete_kl import ReverseKLScore


@torch.no_grad()
def reference_sample(model: AutoregressiveModel, uniforms: Tensor) -> Tensor:
    """Spins ``(n, N)`` by N sequential full forward passes (the straightforward VAN sampler)."""
    s = torch.zeros_like(uniforms)
    for i in range(uniforms.shape[1]):
        logits = model.conditional_logits(s)  # all N logits, only column i used
        s[:, i] = torch.where(uniforms[:, i] < torch.sigmoid(logits[:, i]), 1.0, -1.0)
    return s


def reference_step(
    model: AutoregressiveModel, target: IsingModel2D, batch: int, optimizer: torch.optim.Optimizer
) -> Tensor:
    """One VAN step written out: reference samples, log q, leave-one-out REINFORCE, Adam."""
    reference = next(model.parameters())
    uniforms = torch.rand(batch, model.n_sites, device=reference.device, dtype=reference.dtype)
    s = reference_sample(model, uniforms)
    log_q = torch.nn.functional.logsigmoid(s * model.conditional_logits(s)).sum(-1)
    with torch.no_grad():
        f = target.energy(s) + log_q
        advantage = f - (f.sum() - f) / (batch - 1)
    loss = (advantage * log_q).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def library_step(
    model: AutoregressiveModel,
    objective: ReverseKLScore,
    batch: int,
    optimizer: torch.optim.Optimizer,
) -> Tensor:
    """One VAN step through :class:`~boltzgen.trainers.discrete_kl.ReverseKLScore`."""
    loss, _ = objective.loss(model, batch)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


def median_seconds(function: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def models_for(L: int) -> dict[str, AutoregressiveModel]:
    """The benchmarked architectures at size L (VAN-like settings)."""
    return {
        "made": MADE(L * L, depth=2, width=L * L),
        "pixelcnn": PixelCNN(L, depth=3, width=16, half_kernel_size=3, hidden_half_kernel_size=1),
    }


def measure(
    name: str,
    model: AutoregressiveModel,
    target: IsingModel2D,
    batch: int,
    repeats: int,
    device: torch.device,
) -> dict:
    """One row of the table: the sampler check, samples/s and steps/s of library and reference."""
    torch.manual_seed(0)
    model = model.to(device)
    n_sites = model.n_sites
    generator = torch.Generator(device=device).manual_seed(1)
    uniforms = torch.rand(batch, n_sites, generator=generator, device=device)
    with torch.no_grad():
        same = torch.equal(model._sample_spins(uniforms), reference_sample(model, uniforms))
    cached_s = median_seconds(lambda: model.sample(batch), repeats, device)
    naive_s = median_seconds(
        lambda: reference_sample(model, torch.rand_like(uniforms)), repeats, device
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    objective = ReverseKLScore(target)
    step_s = median_seconds(
        lambda: library_step(model, objective, batch, optimizer), repeats, device
    )
    reference_step_s = median_seconds(
        lambda: reference_step(model, target, batch, optimizer), repeats, device
    )
    return {
        "model": name,
        "n_sites": n_sites,
        "batch": batch,
        "parameters": sum(p.numel() for p in model.parameters()),
        "same_samples_as_reference": same,
        "samples_per_s": batch / cached_s,
        "reference_samples_per_s": batch / naive_s,
        "sampling_speedup": naive_s / cached_s,
        "steps_per_s": 1 / step_s,
        "reference_steps_per_s": 1 / reference_step_s,
        "step_speedup": reference_step_s / step_s,
    }


def run(sizes: list[int], batch: int, repeats: int, device: torch.device) -> list[dict]:
    rows = []
    for L in sizes:
        target = IsingModel2D(L, ISING_CRITICAL_BETA).to(device)
        for name, model in models_for(L).items():
            row = {"L": L, **measure(name, model, target, batch, repeats, device)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[16], help="lattice sizes L")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto", help='"auto", "cpu" or "cuda"')
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    rows = run(args.sizes, args.batch, args.repeats, device)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "rows": rows,
    }
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
