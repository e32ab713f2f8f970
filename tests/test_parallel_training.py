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
from boltzgen.parallel import init_from_environment, world
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
