"""Sharded TA-BG buffers on torch.distributed (gloo, CPU; one thread per rank via torchrun).

The same 1001 log-weights (normal with spread 3, some NaN, +inf and -inf) are split unevenly
over 2 ranks: the clipping threshold, the clipped values, the normaliser, the ESS, the largest
normalised weight and the counts computed with collectives equal the one-process functions of
:mod:`boltzgen.samplers.weights` on all of them (to 1e-12), and the buffer resampled across the
ranks passes a chi-square test against the global clipped weights. Then TA-BG itself runs on 2
ranks end to end.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from torchrun import kill_rank, rank_environment, torchrun

_SHARDED = r"""
import json, math
import torch
from boltzgen.parallel import all_gather_tensor, init_from_environment, shutdown, world
from boltzgen.samplers.sharded import ShardedWeights, sharded_resample
from boltzgen.samplers.weights import clip_log_weights, reverse_ess

init_from_environment(torch.device("cpu"))
N, FRACTION, M = 1001, 0.01, 60_000
log_w = 3.0 * torch.randn(N, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
log_w[[3, 500, 700]] = math.nan
log_w[[10, 900]] = math.inf
log_w[[20, 21]] = -math.inf
split = 400 if world().distributed else N  # rank 0: 400 values, rank 1: 601
mine = slice(0, split) if world().rank == 0 else slice(split, N)
weights = ShardedWeights(log_w[mine], FRACTION)
clipped = clip_log_weights(log_w, FRACTION)
reference = {
    "threshold": float(clipped.max()),
    "log_normalizer": float(torch.logsumexp(clipped, 0)),
    "ess": float(reverse_ess(log_w, FRACTION)),
    "max_weight_fraction": float(torch.exp(clipped.max() - torch.logsumexp(clipped, 0))),
    "n_kept": 996.0, "n_clipped": 9.0, "n_samples": float(N),
}
sharded = {name: float(getattr(weights, name)) for name in reference}
same_clipped = bool(torch.equal(weights.clipped, clipped[mine]))
torch.manual_seed(1 + world().rank)
ids = torch.arange(N, dtype=torch.float64)[mine].reshape(-1, 1)
buffer, unique = sharded_resample(ids, weights, M)
everything = all_gather_tensor(buffer).reshape(-1).long()
if world().rank == 0:
    counts = torch.bincount(everything, minlength=N).tolist()
    print("RESULT " + json.dumps({
        "reference": reference, "sharded": sharded, "same_clipped": same_clipped,
        "local_size": buffer.shape[0], "unique": unique,
        "distinct": int(torch.unique(everything).numel()), "counts": counts,
        "probabilities": torch.softmax(clipped, 0).tolist()}))
shutdown()  # leave the group before exit (gloo aborts a process exiting inside it)
"""


def _sharded(nproc: int, tmp_path) -> dict:
    folder = tmp_path / f"n{nproc}"
    folder.mkdir()
    done = torchrun(_SHARDED, nproc, folder)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_sharded_weights_equal_the_one_process_statistics_and_resample_globally(tmp_path):
    for nproc in (1, 2):
        result = _sharded(nproc, tmp_path)
        reference, sharded = result["reference"], result["sharded"]
        for name, value in reference.items():
            assert abs(sharded[name] - value) <= 1e-12 * max(1.0, abs(value)), (nproc, name)
        assert result["same_clipped"], nproc
        assert result["local_size"] == 60_000 // nproc
        assert result["unique"] == result["distinct"]
        counts = np.asarray(result["counts"], dtype=float)
        p = np.asarray(result["probabilities"])
        assert counts[p == 0].sum() == 0  # NaN, +inf and -inf states are never drawn
        expected = 60_000 * p
        big = expected >= 5  # cells with >= 5 expected draws; the rest pooled into one
        observed = np.append(counts[big], counts[~big].sum())
        wanted = np.append(expected[big], expected[~big].sum())
        chi2 = ((observed - wanted) ** 2 / wanted).sum()
        p_value = stats.chi2.sf(chi2, observed.size - 1)
        assert p_value > 1e-3, (nproc, chi2, observed.size, p_value)


def _final_model(run: Path) -> dict:
    return torch.load(run / "checkpoints/last.pt", weights_only=True)["model"]


def test_tabg_on_two_ranks_end_to_end_and_after_a_killed_rank(tmp_path):
    """``boltzgen train --nproc 2`` runs TA-BG sharded (each rank draws half of every buffer,
    rank 0 alone writes); killing rank 1 while rung 2 trains stops rank 0 with one line within
    seconds, and the rerun resumes and ends bit for bit where an uninterrupted 2-rank run ends;
    the same interrupted run also finishes on 1 process."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))
    from fault_injection import _TABG_TOY

    (tmp_path / "tabg.toml").write_text(_TABG_TOY)

    def train(run: str, nproc: int = 2) -> subprocess.Popen:
        command = [sys.executable, "-m", "boltzgen", "train", "tabg.toml", "-o", run, "--json"]
        return subprocess.Popen(
            [*command, "--nproc", str(nproc), "--no-progress"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=rank_environment(),
            cwd=tmp_path,
        )

    whole = train("whole")
    out, err = whole.communicate(timeout=300)
    assert whole.returncode == 0, err[-3000:]
    summary = json.loads(out)  # one JSON object: rank 0 alone reports
    assert summary["processes"] == 2 and summary["steps"] == 150 + 3 * 40
    ladder = json.loads((tmp_path / "whole/ladder.json").read_text())
    assert ladder["complete"] and len(ladder["rungs"]) == 3
    for rung in ladder["rungs"]:  # global statistics of all 4096 samples of both ranks
        assert rung["n_samples"] == 4096 and 0 < rung["ess"] <= 1
    left = sorted(p.name for p in (tmp_path / "whole/checkpoints").iterdir())
    assert left == ["anneal-1-T2.pt", "anneal-2-T1.pt", "anneal-3-T1.pt", "last.pt", "pretrain.pt"]

    for run, resume_on in (("killed", 2), ("one", 1)):
        killed = train(run)
        folder = tmp_path / run / "checkpoints"
        shares = [folder / f"buffer-anneal-2-T1.rank{r}-of-2.pt" for r in (0, 1)]
        deadline = time.monotonic() + 240
        while not all(share.exists() for share in shares) and killed.poll() is None:
            assert time.monotonic() < deadline, "rung 2's buffer never appeared"
            time.sleep(0.02)
        # in the buffer's collectives or in rung 2's first training steps: one line from rank 0
        # either way, and one from the launcher naming the killed rank
        err = kill_rank(killed, 1)
        # rank 0 sees the lost peer in a collective, or the launcher's SIGTERM first
        assert re.search(r"rank 0 of 2: another process of the|TA-BG interrupted after", err)
        assert len(json.loads((tmp_path / run / "ladder.json").read_text())["rungs"]) == 1
        rerun = train(run, resume_on)
        _, err = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, err[-3000:]
        assert not list(folder.glob("buffer-*")), run  # every share removed, stale ones too
    resumed, reference = _final_model(tmp_path / "killed"), _final_model(tmp_path / "whole")
    for name, value in reference.items():
        assert torch.equal(resumed[name], value), name
    # resumed on 1 process: rank 0's stream continues, rung 2's buffer is drawn again
    ladder = json.loads((tmp_path / "one/ladder.json").read_text())
    assert ladder["complete"] and len(ladder["rungs"]) == 3
