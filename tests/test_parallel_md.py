"""Replica-exchange MD spread over ranks (gloo, CPU; one thread per rank via torchrun).

The run moves temperatures, not configurations, between rows; every rank draws the noise of all
replicas and the same exchange uniforms, so K ranks must reproduce one process's run: the same
exchange decisions, and in float64 the same recorded frames bit for bit.
"""

from __future__ import annotations

import glob
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torchrun import kill_rank, rank_environment

from boltzgen.md import ReplicaExchangeMD
from boltzgen.molecule import Molecule
from boltzgen.parallel import without_option

#: A short alanine-dipeptide ladder: 4 rungs x 2 chains, exchanges every 5 steps (float64).
_MD = [
    "md",
    "alanine-dipeptide",
    "--replicas=8",
    "--rungs=4",
    "--t-max=500",
    "--dtype=float64",
    "--exchange-every=5",
    "--report-every=50",
    "--no-progress",
]


def _md(tmp_path: Path, run: str, steps: int, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "boltzgen", *_MD, f"--steps={steps}", "-o", run, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=rank_environment(),
        cwd=tmp_path,
    )


def _finished(process: subprocess.Popen, timeout: float = 120) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out


def _frames(run: Path) -> dict[str, np.ndarray]:
    chunks = sorted(glob.glob(str(run / "chunks/frames-*.npz")))
    return {
        key: np.concatenate([np.load(chunk)[key] for chunk in chunks])
        for key in ("step", "positions", "potential_energies", "kinetic_temperatures")
    }


def test_moving_temperatures_is_the_run_that_moves_configurations() -> None:
    """On one process the rows keep their configurations and swap temperatures; the slot-ordered
    state after 200 steps equals a replay that swaps configurations in slot order
    (:meth:`ReplicaExchange.exchange`) with the same generator, to float64 rounding."""
    molecule = Molecule.from_catalog("alanine-dipeptide")
    options = {"exchange_every": 5, "seed": 3, "dtype": torch.float64}
    md = ReplicaExchangeMD.for_molecule(molecule, [300.0, 360.0, 430.0], 2, **options)
    md.start(molecule.positions)
    md.advance(200)
    replay = ReplicaExchangeMD.for_molecule(molecule, [300.0, 360.0, 430.0], 2, **options)
    replay.start(molecule.positions)
    state = replay.state
    for _ in range(200):
        state = replay.integrator.step(state, replay.generator)
        if state.step % 5 == 0:
            state = replay.exchange.exchange(state, state.step // 5, replay.generator)
    assert not torch.equal(md.slot_of_row, torch.arange(6))  # some temperatures moved
    assert torch.equal(md.exchange.accepted, replay.exchange.accepted)
    assert md.exchange.accepted.sum() > 0
    moved = md.state
    torch.testing.assert_close(moved.positions, state.positions, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(moved.velocities, state.velocities, rtol=1e-12, atol=1e-12)


def test_two_ranks_record_the_one_process_run_and_resume_after_a_killed_rank(tmp_path):
    """``boltzgen md --nproc 2`` records the frames, exchange rates and checkpoint of the
    1-process run bit for bit (float64); killing rank 1 mid-run stops rank 0 with one line
    within seconds, and the rerun (on 2 ranks, or on 1 process) ends with the frames of the
    uninterrupted run."""
    whole = _md(tmp_path, "one", 1000, "--checkpoint-every=100")
    _finished(whole)
    two = _md(tmp_path, "two", 1000, "--checkpoint-every=100", "--nproc=2", "--json")
    summary = json.loads(_finished(two))  # one JSON object: rank 0 alone reports
    reference = json.loads((tmp_path / "one/summary.json").read_text())
    assert summary["exchange_acceptance"] == reference["exchange_acceptance"]
    assert all(0 < rate < 1 for rate in summary["exchange_acceptance"])
    expected = _frames(tmp_path / "one")
    for key, value in _frames(tmp_path / "two").items():
        assert np.array_equal(value, expected[key]), key
    saved = [
        torch.load(tmp_path / run / "checkpoint.pt", weights_only=True)["simulation"]
        for run in ("one", "two")
    ]
    for key in ("positions", "velocities", "accepted", "rng"):
        assert torch.equal(saved[0][key], saved[1][key]), key

    for run, resume_on in (("killed", "--nproc=2"), ("on-one", "--nproc=1")):
        killed = _md(tmp_path, run, 1000, "--checkpoint-every=100", "--nproc=2")
        deadline = time.monotonic() + 120
        while not (tmp_path / run / "checkpoint.pt").exists() and killed.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.01)
        err = kill_rank(killed, 1)
        # rank 0 sees the lost peer in a collective, or the launcher's SIGTERM first
        assert re.search(r"rank 0 of 2: another process of the run stopped near|terminated", err)
        _finished(_md(tmp_path, run, 1000, "--checkpoint-every=100", resume_on))
        for key, value in _frames(tmp_path / run).items():
            assert np.array_equal(value, expected[key]), (run, key)


def test_reference_on_two_ranks_writes_the_one_process_dataset(tmp_path):
    """``boltzgen reference --nproc 2`` writes the splits of the 1-process run, and a replica
    count that the processes cannot share is refused once, before any rank starts."""
    reference = [*_MD[2:], "--equilibration=100", "--frames=20"]
    del reference[reference.index("--report-every=50")]
    base = [sys.executable, "-m", "boltzgen", "reference", "alanine-dipeptide"]
    for run, extra in (("one", []), ("two", ["--nproc=2"])):
        done = subprocess.run(
            [*base, *reference, "-o", run, "--json", *extra],
            capture_output=True,
            text=True,
            env=rank_environment(),
            cwd=tmp_path,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        json.loads(done.stdout)
    for split in ("train", "val", "test"):
        one, two = (np.load(tmp_path / run / f"{split}.npz") for run in ("one", "two"))
        for key in one.files:
            assert np.array_equal(one[key], two[key]), (split, key)
    bad = subprocess.run(
        [*base, *reference, "-o", "bad", "--nproc=3"],
        capture_output=True,
        text=True,
        env=rank_environment(),
        cwd=tmp_path,
        timeout=60,
    )
    assert bad.returncode == 2 and not (tmp_path / "bad").exists()
    assert bad.stderr.splitlines() == [
        "boltzgen: error: --replicas (8) must be a multiple of --nproc (3)"
    ]


@pytest.mark.parametrize(
    "arguments, expected",
    [
        (["md", "x", "--nproc", "2", "--steps=3"], ["md", "x", "--steps=3"]),
        (["md", "--nproc=4", "x"], ["md", "x"]),
        (["md", "x"], ["md", "x"]),
    ],
)
def test_a_rank_runs_the_command_without_nproc(arguments, expected) -> None:
    assert without_option(arguments, "--nproc") == expected
