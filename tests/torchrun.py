"""Launch a short Python script on K gloo ranks with ``torchrun`` (for the distributed tests).

Each rank runs with one thread and joins the group through
:func:`boltzgen.parallel.init_from_environment`; the script's stdout/stderr come back in the
:class:`subprocess.CompletedProcess`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

__all__ = ["torchrun", "torchrun_command"]

#: A rendezvous on the loopback device, never on the network.
_LOOPBACK = ["--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0"]


def torchrun_command(nproc: int, *arguments: str, nnodes: int = 1) -> list[str]:
    """The ``python -m torch.distributed.run`` command line for ``nproc`` ranks per node."""
    standalone = ["--standalone"] if nnodes == 1 else []
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *standalone,
        f"--nnodes={nnodes}",
        f"--nproc-per-node={nproc}",
        "--max-restarts=0",
        *arguments,
    ]


def rank_environment() -> dict[str, str]:
    """The environment of a launch: one thread per rank, this checkout importable."""
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def torchrun(
    script: str, nproc: int, tmp_path: Path, *arguments: str, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run ``script`` (Python source, dedented) on ``nproc`` ranks; the finished process."""
    path = tmp_path / "rank_script.py"
    path.write_text(textwrap.dedent(script))
    return subprocess.run(
        torchrun_command(nproc, str(path), *arguments),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=rank_environment(),
        cwd=tmp_path,
    )
