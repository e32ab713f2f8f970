"""Data-parallel training on torch.distributed (gloo, CPU; one thread per rank via torchrun).

Equivalence: when the K ranks draw the noise of one global batch exactly as one process draws
it (rank r takes rows r*n..(r+1)*n of the global batch), K-rank and 1-process training end with
the same parameters, float64, 20 steps, relative difference <= 1e-10, for reverse KL (pathwise,
a spline coupling flow on the 8-mode mixture), forward KL (the same flow on exact samples) and
the score-function reverse KL of an autoregressive model on a 3 x 3 Ising model (global
leave-one-out baseline). The global batch splitting is done by small subclasses in the rank
script; the loop, the all-reduce and the optimiser are the package's.
"""

from __future__ import annotations

import json

import pytest
from torchrun import torchrun

_EQUIVALENCE = r"""
import json, sys
import torch
from boltzgen.energy.lattice import IsingModel2D
from boltzgen.energy.toy import GaussianMixture2D
from boltzgen.flows.coupling import CouplingFlow
from boltzgen.models.autoregressive import MADE
from boltzgen.parallel import init_from_environment, shutdown, world
from boltzgen.trainers import ForwardKL, ReverseKL, Trainer, TrainSettings
from boltzgen.trainers.discrete_kl import ReverseKLScore
from boltzgen.trainers.objective import NONFINITE_SAMPLES, finite_mean

init_from_environment(torch.device("cpu"))
GLOBAL = 16

def rows(n):
    w = world()
    return slice(w.rank * n, (w.rank + 1) * n)

class SplitNoiseFlow(CouplingFlow):
    draws = 0
    def sample_and_log_prob(self, n):
        with torch.random.fork_rng():
            torch.manual_seed(1000 + self.draws)
            z = self.prior.rsample(GLOBAL)[rows(n)]
        self.draws += 1
        x, log_det = self.transform(z)
        return x, self.prior.log_prob(z) - log_det

class SplitForwardKL(ForwardKL):
    draws = 0
    def loss(self, model, n):
        with torch.random.fork_rng():
            torch.manual_seed(2000 + self.draws)
            index = torch.randint(self.data.shape[0], (GLOBAL,))[rows(n)]
        self.draws += 1
        log_likelihood, nonfinite = finite_mean(model.log_prob(self.data[index]))
        return -log_likelihood, {"nll": -log_likelihood.detach(), NONFINITE_SAMPLES: nonfinite}

class SplitMADE(MADE):
    draws = 0
    def sample(self, n, generator=None):
        g = torch.Generator().manual_seed(3000 + self.draws)
        self.draws += 1
        return super().sample(GLOBAL, g)[rows(n)]

settings = TrainSettings(steps=20, batch_size=GLOBAL, lr=3e-3, log_every=5, progress=False)
results = {}
mixture = GaussianMixture2D().to(torch.device("cpu"), torch.float64)
for name in ("reverse-kl", "forward-kl"):
    torch.manual_seed(0)
    flow = SplitNoiseFlow(2, n_layers=2, hidden=16, seed=0).double()
    objective = ReverseKL(mixture) if name == "reverse-kl" else SplitForwardKL(
        mixture.sample(256, torch.Generator().manual_seed(5)))
    start = torch.nn.utils.parameters_to_vector(flow.parameters()).tolist()
    trainer = Trainer(flow, objective, settings)
    last = trainer.fit()
    results[name] = {"params": torch.nn.utils.parameters_to_vector(flow.parameters()).tolist(),
                     "start": start, "loss": last["loss"]}
ising = IsingModel2D(3, 0.4).to(torch.device("cpu"), torch.float64)
torch.manual_seed(0)
made = SplitMADE(9, depth=1, width=16).double()
start = torch.nn.utils.parameters_to_vector(made.parameters()).tolist()
trainer = Trainer(made, ReverseKLScore(ising), settings)
last = trainer.fit()
results["reverse-kl-score"] = {
    "params": torch.nn.utils.parameters_to_vector(made.parameters()).tolist(),
    "start": start, "loss": last["loss"], "energy_evaluations": trainer.energy_evaluations}
if world().rank == 0:
    print("RESULT " + json.dumps(results))
shutdown()  # leave the group before exit (gloo may abort a process exiting inside it)
"""


def _results(nproc: int, tmp_path) -> dict:
    folder = tmp_path / f"n{nproc}"
    folder.mkdir()
    done = torchrun(_EQUIVALENCE, nproc, folder)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_two_ranks_end_with_the_parameters_of_one_process(tmp_path):
    one, two = _results(1, tmp_path), _results(2, tmp_path)
    for name in ("reverse-kl", "forward-kl", "reverse-kl-score"):
        a, b = one[name]["params"], two[name]["params"]
        scale = max(abs(v) for v in a)
        difference = max(abs(x - y) for x, y in zip(a, b, strict=True))
        assert difference <= 1e-10 * scale, (name, difference, scale)
        assert two[name]["loss"] == pytest.approx(one[name]["loss"], rel=1e-10)
        moved = max(abs(x - y) for x, y in zip(a, one[name]["start"], strict=True))
        assert moved > 1e-4 * scale, name  # the comparison is not of two untrained models
    assert one["reverse-kl-score"]["energy_evaluations"] == 20 * 16
    assert two["reverse-kl-score"]["energy_evaluations"] == 20 * 16


_KILLED = r"""
import os, sys
import torch
from boltzgen.energy.toy import GaussianMixture2D
from boltzgen.flows.coupling import CouplingFlow
from boltzgen.parallel import init_from_environment, shutdown, world
from boltzgen.trainers import ReverseKL, Trainer, TrainSettings

init_from_environment(torch.device("cpu"))
die_at = int(sys.argv[2])

class Dying(ReverseKL):
    calls = 0
    def loss(self, model, n):
        self.calls += 1
        if world().rank == world().size - 1 and self.calls == die_at:
            os._exit(3)  # a rank killed mid-step
        return super().loss(model, n)

torch.manual_seed(0)
flow = CouplingFlow(2, n_layers=2, hidden=16, seed=0).double()
target = GaussianMixture2D().to(torch.device("cpu"), torch.float64)
settings = TrainSettings(steps=40, batch_size=16, log_every=5, checkpoint_every=10,
                         progress=False)
trainer = Trainer(flow, Dying(target), settings, run_dir=sys.argv[1])
try:
    trainer.fit()
except Exception as error:
    print(f"{type(error).__name__}: {error}", file=sys.stderr)
    sys.exit(2)
if world().rank == 0:
    torch.save(torch.nn.utils.parameters_to_vector(flow.parameters()).detach(),
               os.path.join(sys.argv[1], "params.pt"))
shutdown()
"""


def _params(run_dir):
    import torch

    return torch.load(run_dir / "params.pt", weights_only=True)


def test_a_killed_rank_stops_the_others_and_the_run_resumes(tmp_path):
    import time

    import torch

    started = time.perf_counter()
    killed = torchrun(_KILLED, 2, tmp_path, str(tmp_path / "killed"), "25")
    elapsed = time.perf_counter() - started
    assert killed.returncode != 0
    assert elapsed < 30, elapsed  # no hang: the survivor gives up at once
    assert "ProcessLost: rank 0 of 2: another process of the run stopped during step 25" in (
        killed.stderr
    )
    assert "the last checkpoint (step 20) is kept" in killed.stderr
    state = torch.load(tmp_path / "killed/checkpoints/last.pt", weights_only=True)
    assert state["step"] == 20 and len(state["ranks"]) == 2
    # rerun on 2 ranks: resumes at step 20 and ends where an uninterrupted run ends
    assert torchrun(_KILLED, 2, tmp_path, str(tmp_path / "killed"), "0").returncode == 0
    assert torchrun(_KILLED, 2, tmp_path, str(tmp_path / "whole"), "0").returncode == 0
    assert torch.equal(_params(tmp_path / "killed"), _params(tmp_path / "whole"))
    # a 2-rank checkpoint resumes on 1 process (rank 0's stream continues) and finishes
    (tmp_path / "one").mkdir()
    (tmp_path / "one/checkpoints").mkdir()
    (tmp_path / "one/checkpoints/last.pt").write_bytes(
        (tmp_path / "whole/checkpoints/last.pt").read_bytes()
    )
    one = torchrun(_KILLED, 1, tmp_path, str(tmp_path / "one"), "0")
    assert one.returncode == 0, one.stderr[-2000:]


def test_cli_nproc_trains_on_two_ranks_and_reports_once(tmp_path):
    import subprocess
    import sys

    from torchrun import rank_environment

    from boltzgen.workflow.templates import template_with

    (tmp_path / "smoke.toml").write_text(template_with("toy-smoke", []))
    command = [sys.executable, "-m", "boltzgen", "train", "smoke.toml", "--json"]
    done = subprocess.run(
        [*command, "-o", str(tmp_path / "run"), "--nproc", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env=rank_environment(),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout)  # one JSON object: rank 0 alone reports
    assert summary["processes"] == 2 and summary["steps"] == 20
    assert summary["energy_evaluations"] == 20 * 32
    rows = (tmp_path / "run/metrics.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["5", "10", "15", "20"]
    bad = subprocess.run(
        [*command, "--nproc", "0"], capture_output=True, text=True, env=rank_environment()
    )
    assert bad.returncode == 2
    assert "'0' is not a number of processes" in bad.stderr.splitlines()[-1]


def test_two_nodes_on_one_machine_train_together(tmp_path):
    """Two torchrun invocations (``--nnodes 2``, one rank each) meet at a c10d rendezvous on
    the loopback device, as two machines would, and train one run."""
    from torchrun import two_nodes

    from boltzgen.workflow.templates import template_with

    (tmp_path / "smoke.toml").write_text(template_with("toy-smoke", []))
    outputs = two_nodes(tmp_path, "-m", "boltzgen", "train", "smoke.toml", "-o", "run", "--json")
    reports = [json.loads(out) for out, _ in outputs if out.strip()]
    assert len(reports) == 1 and reports[0]["processes"] == 2  # rank 0's node reports
    assert json.loads((tmp_path / "run/summary.json").read_text())["processes"] == 2
