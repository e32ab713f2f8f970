"""The GPU check: correctness and speed on one CUDA machine, in one run of a few minutes.

Sections (each reported, none fatal to the others):

- ``environment``: torch, CUDA device, OpenMM version and platforms;
- ``sync_free``: training steps of reverse KL (molecular flow + torch force field), forward KL
  (coupling flow on exact samples) and the score-function reverse KL (MADE on an Ising model)
  run under ``torch.cuda.set_sync_debug_mode("error")``: any host-device synchronisation inside
  a step is an error (on the CPU this section is skipped);
- ``energy``: energy+force evaluations/s of the torch force field at batch 1e3..1e6 against
  OpenMM's CPU (one thread) and CUDA loops, one configuration per call
  (:func:`boltzgen.energy.forcefield.benchmark.benchmark_molecule`);
- ``flow_step``: the reverse-KL step of a 60-feature, 16-coupling spline flow at batch 1024:
  eager, ``torch.compile``d, compiled with CUDA graphs (``reduce-overhead``), and nflows when
  installed (``analysis/bench_flow_step.py``);
- ``md``: replica-steps/s of batched Langevin MD against OpenMM's LangevinMiddle (CPU and CUDA
  platforms; :func:`boltzgen.md.benchmark.benchmark_md`);
- ``tabg``: a short TA-BG run of alanine dipeptide (the ``tabg-alanine-dipeptide-gpu-fast``
  template with smaller budgets): ESS at 300 K, energy evaluations, wall time.

``--quick`` shrinks every size so that the whole script runs in seconds on a CPU (what the test
suite exercises). Usage::

    python analysis/gpu_check.py [--quick] [--device cuda] [--json-out gpu_check.json]

``analysis/gpu_check.sh`` installs what a bare GPU machine lacks and runs this.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_flow_step, a sibling script

#: ``--set`` overrides of the short TA-BG run (full size, then ``--quick``).
TABG_OVERRIDES = {
    False: [
        "trainer.pretrain_steps=3000",
        "trainer.n_rungs=5",
        "trainer.extra_final_rungs=1",
        "trainer.buffer_samples=200000",
        "trainer.resample_size=100000",
        "trainer.rung_steps=500",
        "trainer.rung_batch_size=4096",
        "sample.n=100000",
    ],
    True: [
        "model.n_layers=2",
        "model.hidden=16",
        "model.depth=1",
        "trainer.pretrain_steps=4",
        "trainer.pretrain_batch_size=32",
        "trainer.n_rungs=1",
        "trainer.extra_final_rungs=0",
        "trainer.buffer_samples=256",
        "trainer.resample_size=128",
        "trainer.rung_steps=2",
        "trainer.rung_batch_size=32",
        "trainer.chunk_size=256",
        "trainer.log_every=2",
        "sample.n=256",
    ],
}


def environment(device: torch.device) -> dict[str, Any]:
    """Versions, the device's name and OpenMM's platforms."""
    import openmm

    from boltzgen.energy.forcefield.benchmark import openmm_platforms
    from boltzgen.tensors import device_description

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": device_description(device),
        "openmm": openmm.__version__,
        "openmm_platforms": openmm_platforms(),
    }


def _trainer(template: str, overrides: list[str], device: torch.device) -> Any:
    """A :class:`~boltzgen.trainers.Trainer` (no run directory) of a template on ``device``."""
    from boltzgen.trainers import Trainer
    from boltzgen.workflow.config import parse_config_text
    from boltzgen.workflow.registry import (
        build_model,
        build_objective,
        build_target,
        resolve_config,
        train_settings,
    )
    from boltzgen.workflow.templates import template_with

    text = template_with(template, [f'device="{device}"', *overrides])
    resolved = resolve_config(parse_config_text(text, template))
    target = build_target(resolved)
    model = build_model(resolved, target)
    return Trainer(model, build_objective(resolved, target), train_settings(resolved, False))


#: Templates and overrides of the sync-free check: three kinds of gradient estimator.
SYNC_CASES = {
    "reverse-kl (molecular flow, torch force field)": (
        "reverse-kl-alanine-dipeptide",
        ["trainer.batch_size=256", "model.hidden=64"],
    ),
    "forward-kl (coupling flow, exact samples)": ("toy-forward-kl", ["trainer.batch_size=256"]),
    "reverse-kl-score (MADE, Ising)": ("van-ising", ["trainer.batch_size=256"]),
}


def sync_free(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    """Run training steps under ``set_sync_debug_mode("error")``; one row per objective."""
    rows = []
    for label, (template, overrides) in SYNC_CASES.items():
        if device.type != "cuda":
            rows.append({"objective": label, "result": "skipped (not a CUDA device)"})
            continue
        trainer = _trainer(template, overrides, device)
        accumulated: dict[str, torch.Tensor] = {}
        for _ in range(3):  # warm-up: allocations, lazy initialisation
            trainer._train_step(accumulated)
        torch.cuda.synchronize(device)
        torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(5):
                trainer._train_step(accumulated)
            result = "ok: no host-device synchronisation in 5 steps"
        except RuntimeError as error:
            result = f"synchronises: {str(error).splitlines()[0]}"
        finally:
            torch.cuda.set_sync_debug_mode("default")
        rows.append({"objective": label, "result": result})
    return rows


def energy(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    """Torch force field vs OpenMM loops, alanine dipeptide in OBC implicit solvent."""
    from boltzgen.energy.forcefield.benchmark import benchmark_molecule
    from boltzgen.molecule.molecule import Molecule

    molecule = Molecule.from_catalog("alanine-dipeptide")
    rows = benchmark_molecule(
        molecule.name,
        molecule.system,
        molecule.positions,
        molecule.temperature,
        batches=(64,) if quick else (1024,),
        workers=(1,),
        gpu_batches=(1000,) if quick else (1000, 10_000, 100_000, 1_000_000),
        seconds=0.2 if quick else 2.0,
    )
    return [row.to_dict() for row in rows]


def flow_step(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    """The spline-flow reverse-KL step: eager, compiled, CUDA graphs, nflows."""
    import bench_flow_step

    cases: dict[str, tuple[str, bool | str]] = {"ours": ("ours", False)}
    if device.type == "cuda":
        cases |= {"ours+compile": ("ours", True), "ours+cudagraphs": ("ours", "reduce-overhead")}
    try:
        import nflows  # noqa: F401

        cases["nflows"] = ("nflows", False)
    except ImportError:
        pass
    size = (8, 2, 64, 16) if quick else (60, 16, 1024, 256)
    dim, layers, batch, hidden = size
    args = SimpleNamespace(
        hidden=hidden, bins=8, steps=3 if quick else 20, warmup=1 if quick else 5
    )
    return bench_flow_step.compare(cases, dim, layers, batch, device, args)


def md(device: torch.device, quick: bool) -> list[dict[str, Any]]:
    """Batched Langevin MD replica-steps/s vs OpenMM."""
    from boltzgen.md.benchmark import benchmark_md
    from boltzgen.molecule.molecule import Molecule

    molecule = Molecule.from_catalog("alanine-dipeptide")
    rows = benchmark_md(
        molecule,
        cpu_replicas=(16,) if quick else (1024,),
        gpu_replicas=(1000,) if quick else (1000, 10_000, 100_000),
        seconds=0.2 if quick else 2.0,
    )
    return [row.to_dict() for row in rows]


def tabg(device: torch.device, quick: bool) -> dict[str, Any]:
    """A short TA-BG run of alanine dipeptide: ESS at 300 K, energy evaluations, wall time."""
    from boltzgen.workflow.config import parse_config_text
    from boltzgen.workflow.runs import train_run
    from boltzgen.workflow.templates import template_with

    overrides = [f'device="{device}"', *TABG_OVERRIDES[quick]]
    text = template_with("tabg-alanine-dipeptide-gpu-fast", overrides)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        summary = train_run(parse_config_text(text, "gpu-check"), Path(folder) / "run", False)
    keys = ("ess", "sample_temperature", "energy_evaluations", "basin_populations", "steps")
    return {
        "overrides": overrides,
        **{key: summary[key] for key in keys if key in summary},
        "wall_time_s": time.perf_counter() - started,
    }


SECTIONS: dict[str, Callable[[torch.device, bool], Any]] = {
    "sync_free": sync_free,
    "energy": energy,
    "flow_step": flow_step,
    "md": md,
    "tabg": tabg,
}


def run(device: torch.device, quick: bool, sections: list[str]) -> dict[str, Any]:
    """Every section in turn; a failing one records its error and the others still run."""
    report: dict[str, Any] = {"environment": environment(device), "quick": quick}
    for name in sections:
        started = time.perf_counter()
        try:
            report[name] = SECTIONS[name](device, quick)
        except Exception as error:  # reported, not fatal: the machine may be lent briefly
            report[name] = {"error": f"{type(error).__name__}: {error}"[:300]}
            traceback.print_exc()
        print(f"[{name}: {time.perf_counter() - started:.1f} s]", file=sys.stderr, flush=True)
    return report


def print_report(report: dict[str, Any]) -> None:
    """The report as short tables."""
    env = report["environment"]
    print(
        f"torch {env['torch']} (CUDA {env['cuda']}), {env['device']}, OpenMM {env['openmm']} "
        f"({', '.join(env['openmm_platforms'])})"
    )
    for name in SECTIONS:
        value = report.get(name)
        if value is None:
            continue
        print(f"\n== {name}")
        rows = value if isinstance(value, list) else [value]
        for row in rows:
            print("  " + ", ".join(f"{k}={_short(v)}" for k, v in row.items()))


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (seconds on a CPU)")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--json-out", help="write the report to this JSON file")
    args = parser.parse_args(argv)
    report = run(torch.device(args.device), args.quick, args.sections)
    print_report(report)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=1, default=str))
    failed = [
        name
        for name in args.sections
        if isinstance(report[name], dict) and "error" in report[name]
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
