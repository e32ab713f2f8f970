"""Launch a short Python script on K gloo ranks with ``torchrun`` (for the distributed tests).

Each rank runs with one thread and joins the group through
:func:`boltzgen.parallel.init_from_environment`; the script's stdout/stderr come back in the
:class:`subprocess.CompletedProcess`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

__all__ = [
    "torchrun",
    "torchrun_command",
    "rank_environment",
    "rank_pids",
    "kill_rank",
    "two_nodes",
]

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


def rank_pids(launcher: int) -> dict[int, int]:
    """The torchrun workers of ``launcher``: ``{rank: pid}`` read from ``/proc``."""
    pids = {}
    children = Path(f"/proc/{launcher}/task/{launcher}/children")
    for pid in children.read_text().split() if children.exists() else []:
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"RANK="):
                pids[int(entry[5:])] = int(pid)
    return pids


def kill_rank(launch: subprocess.Popen, rank: int) -> str:
    """SIGKILL rank ``rank`` of a running launch; assert that the launch then fails within 30 s
    with one line from the surviving rank, one from the launcher naming the killed rank, and no
    traceback; return its stderr."""
    os.kill(rank_pids(launch.pid)[rank], signal.SIGKILL)
    stopped = time.monotonic()
    _, err = launch.communicate(timeout=60)
    assert launch.returncode != 0 and time.monotonic() - stopped < 30
    assert "Traceback" not in err and err.count("\n") == 2, err
    assert f"rank {rank} of 2 stopped (signal 9)" in err
    return err


def two_nodes(cwd: Path, *arguments: str, timeout: float = 120) -> list[tuple[str, str]]:
    """Two torchrun invocations (``--nnodes 2``, one rank each) of ``python ARGUMENTS`` in
    ``cwd`` that meet at a c10d rendezvous on a free loopback port, as two machines would;
    assert both succeed and return their ``(stdout, stderr)``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    rendezvous = ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=two"]
    nodes = [
        subprocess.Popen(
            torchrun_command(1, *rendezvous, *arguments, nnodes=2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=rank_environment(),
            cwd=cwd,
        )
        for _ in range(2)
    ]
    outputs = [node.communicate(timeout=timeout) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in outputs]
    return outputs
