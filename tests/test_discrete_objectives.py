"""Gradient estimators of forward KL (PCD), reverse KL (score function), their sum and ratio
divergence.

Each estimator, fed exact samples of target and model (enumeration, 6 spins), must match the
autograd gradient of the exact objective (enumeration) within Monte Carlo error; at the target's
own parameters every exact objective and its gradient vanish.
"""

from __future__ import annotations

import copy

import pytest
import torch

from boltzgen.diagnostics.discrete import (
    enumerated_log_prob,
    exact_forward_kl,
    exact_ratio_divergence,
    exact_reverse_kl,
)
from boltzgen.energy.lattice import SherringtonKirkpatrick
from boltzgen.errors import BoltzgenError
from boltzgen.models import RBM, RBMEnergy
from boltzgen.trainers.discrete_kl import (
    ForwardKLPCD,
    ForwardReverseKL,
    ReverseKLScore,
    forward_kl_surrogate,
    reverse_kl_surrogate,
)
from boltzgen.trainers.loop import Trainer, TrainSettings
from boltzgen.trainers.objective import Objective
from boltzgen.trainers.ratio_divergence import RatioDivergence, ratio_divergence_surrogate

N_SPINS = 6


def _model(seed: int = 0) -> RBM:
    rbm = RBM(N_SPINS, 4, "spin", init_std=0.5, seed=seed, dtype=torch.float64)
    with torch.no_grad():
        rbm.visible_bias.normal_(0, 0.3, generator=torch.Generator().manual_seed(seed + 1))
        rbm.hidden_bias.normal_(0, 0.3, generator=torch.Generator().manual_seed(seed + 2))
    return rbm


def _exact_objectives(target, model: RBM) -> dict[str, torch.Tensor]:
    log_p = enumerated_log_prob(lambda s: -target.energy(s), N_SPINS).detach()
    log_q = enumerated_log_prob(lambda v: -model.free_energy(v), N_SPINS)
    forward, reverse = exact_forward_kl(log_p, log_q), exact_reverse_kl(log_p, log_q)
    return {
        "forward": forward,
        "reverse": reverse,
        "sum": forward + reverse,
        "rd": exact_ratio_divergence(log_p, log_q),
    }


def _surrogate(name: str, model: RBM, target, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if name == "forward":
        return forward_kl_surrogate(model, x, y)[0]
    if name == "reverse":
        return reverse_kl_surrogate(model, target, y)[0]
    if name == "sum":
        return forward_kl_surrogate(model, x, y)[0] + reverse_kl_surrogate(model, target, y)[0]
    return ratio_divergence_surrogate(model, x, -target.energy(x), target, y)[0]


def _flat_grad(loss: torch.Tensor, model: RBM) -> torch.Tensor:
    return torch.cat(
        [
            g.reshape(-1)
            for g in torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
        ]
    )


@pytest.mark.parametrize("name", ["forward", "reverse", "sum", "rd"])
def test_estimator_matches_exact_gradient(name: str) -> None:
    # Target: SK, N=6, beta=1.5. 50 independent batches of 4000 exact target samples and 4000
    # exact model samples (2e5 each); the standard error of each gradient component is the
    # spread of the 50 batch estimates / sqrt(50); tolerance 4.5 s.e. per component.
    target = SherringtonKirkpatrick(N_SPINS, 1.5, seed=4)
    model = _model()
    exact_grad = _flat_grad(_exact_objectives(target, model)[name], model)
    generator = torch.Generator().manual_seed(7)
    x_all = target.exact().sample(200_000, generator)
    y_all = model.exact().sample(200_000, generator)
    estimates = torch.stack(
        [
            _flat_grad(_surrogate(name, model, target, x, y), model)
            for x, y in zip(x_all.split(4000), y_all.split(4000))
        ]
    )
    mean, error = estimates.mean(0), estimates.std(0) / estimates.shape[0] ** 0.5
    assert bool(((mean - exact_grad).abs() <= 4.5 * error + 1e-12).all()), (
        mean - exact_grad
    ) / error
    assert float(exact_grad.abs().max()) > 10 * float(error.max())  # the test has power


def test_exact_objectives_vanish_at_target() -> None:
    # Model == target (an RBM target with the model's own parameters): value and gradient < 1e-8.
    model = _model(3)
    target = RBMEnergy(model)
    for name, value in _exact_objectives(target, model).items():
        grad = _flat_grad(value, model)
        assert abs(float(value.detach())) < 1e-8 and float(grad.abs().max()) < 1e-8, name


def test_reverse_and_rd_estimators_vanish_at_target() -> None:
    # With q = p the log-ratio l is constant, so these estimators are zero for any samples.
    model = _model(3)
    target = RBMEnergy(model)
    y = model.sample(512, 5, torch.Generator().manual_seed(0))
    x = model.sample(512, 5, torch.Generator().manual_seed(1))
    for name in ("reverse", "rd"):
        assert float(_flat_grad(_surrogate(name, model, target, x, y), model).abs().max()) < 1e-8


def test_objectives_follow_protocol_and_train() -> None:
    # 200 Adam steps (batch 256, lr 0.05, PCD-2) of each objective on an SK N=6 target from exact
    # data
    # lower the exact forward + reverse KL of a fresh RBM by at least half.
    torch.manual_seed(0)
    target = SherringtonKirkpatrick(N_SPINS, 1.0, seed=2)
    data = target.exact().sample(20_000, torch.Generator().manual_seed(0))
    objectives = [
        ForwardKLPCD(data, 2),
        ReverseKLScore(target, 2),
        ForwardReverseKL(target, data, 2),
        RatioDivergence(target, data, 2),
    ]
    for objective in objectives:
        assert isinstance(objective, Objective)
        model = RBM(N_SPINS, 8, "spin", init_std=0.05, seed=1, dtype=torch.float64)
        start = float(_exact_objectives(target, model)["sum"].detach())
        optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
        for _ in range(200):
            loss, diagnostics = objective.loss(model, 256)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        assert all(v.dim() == 0 and not v.requires_grad for v in diagnostics.values())
        assert float(_exact_objectives(target, model)["sum"].detach()) < 0.5 * start, (
            objective.name
        )
        state = copy.deepcopy(objective.state_dict())
        objective.load_state_dict(state)
        assert torch.equal(objective.state_dict()["chains"]["states"], state["chains"]["states"])
        assert objective.energy_evaluations(256) == (0 if objective.name == "forward-kl" else 256)


def test_score_estimators_refuse_a_batch_of_one() -> None:
    """The leave-one-out baseline needs two model samples: a clear error, not NaN steps."""
    target = SherringtonKirkpatrick(6, beta=0.5, seed=0)
    with pytest.raises(
        BoltzgenError,
        match="batch_size = 1 is too small: the reverse-kl objective needs at least 2",
    ):
        Trainer(
            _model(),
            ReverseKLScore(target, 1),
            TrainSettings(steps=1, batch_size=1, progress=False),
        )
    Trainer(
        _model(), ReverseKLScore(target, 1), TrainSettings(steps=1, batch_size=2, progress=False)
    )
