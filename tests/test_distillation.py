"""Distillation: the categorical divergences and DKDR's weights against hand-computed values, every
``distill`` gradient estimator against autograd of the exact objective by enumeration, and a
teacher run distilled into a student run end to end."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from boltzgen.diagnostics.discrete import exact_forward_kl, exact_reverse_kl
from boltzgen.energy.exact import enumerate_states
from boltzgen.errors import BoltzgenError
from boltzgen.models import MADE, RBM
from boltzgen.trainers.distillation import (
    DIVERGENCES,
    Distill,
    class_logits,
    dkdr_loss,
    dkdr_weights,
    forward_kl,
    reverse_kl,
    site_divergence,
    skew_forward_kl,
    skew_reverse_kl,
    teacher_mixed_sample,
)

LOG = torch.log


def _t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def test_kls_and_skewed_kls_match_hand_computed_values() -> None:
    """p = (0.5, 0.5), q = (0.9, 0.1), lam = 0.1: the mixtures are (0.86, 0.14) and (0.54, 0.46);
    at lam = 0 the skewed KLs are the KLs (agreement to 1e-12)."""
    p, q = LOG(_t(0.5, 0.5)), LOG(_t(0.9, 0.1))
    assert float(forward_kl(p, q)) == pytest.approx(0.5 * math.log(0.5 / 0.9 * 0.5 / 0.1), 1e-12)
    assert float(reverse_kl(p, q)) == pytest.approx(
        0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5), 1e-12
    )
    assert float(skew_forward_kl(p, q)) == pytest.approx(
        0.5 * math.log(0.5 / 0.86) + 0.5 * math.log(0.5 / 0.14), 1e-12
    )
    assert float(skew_reverse_kl(p, q)) == pytest.approx(
        0.9 * math.log(0.9 / 0.54) + 0.1 * math.log(0.1 / 0.46), 1e-12
    )
    logits = torch.randn(5, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    t, s = logits[0], logits[1]
    torch.testing.assert_close(skew_forward_kl(t, s, 0.0), forward_kl(t, s))
    torch.testing.assert_close(skew_reverse_kl(t, s, 0.0), reverse_kl(t, s))
    assert forward_kl(t, s).shape == (3,)
    with pytest.raises(BoltzgenError, match=r"\[0, 1\)"):
        skew_forward_kl(t, s, 1.0)


@pytest.mark.parametrize(
    ("p", "q", "g_forward"),
    [
        # sorted p: 0.4 (class 1), 0.3, 0.2, 0.1; cumulative 0.4, 0.7: head = {1};
        # e = (0.15, 0.05, 0.05, 0.15) in that order: g_F = 0.15 / 0.4
        ((0.3, 0.4, 0.2, 0.1), (0.25, 0.25, 0.25, 0.25), 0.375),
        # ties: stable order 0, 1, 2, 3; cumulative 0.25, 0.5 (<= 0.5): head = {0, 1};
        # e = (0.15, 0.15, 0.05, 0.05): g_F = 0.3 / 0.4
        ((0.25, 0.25, 0.25, 0.25), (0.4, 0.1, 0.3, 0.2), 0.75),
        # the top class alone covers more than half: it is still the head
        ((0.1, 0.6, 0.3), (0.3, 0.5, 0.2), 0.1 / 0.4),
        # one-hot teacher: head = the top class, whose error equals the tail's: 1/2
        ((0.0, 1.0, 0.0), (0.1, 0.6, 0.3), 0.5),
        # zero error: 1/2, 1/2 (no 0/0)
        ((0.2, 0.3, 0.5), (0.2, 0.3, 0.5), 0.5),
    ],
)
def test_dkdr_weights_match_hand_computed_values(p, q, g_forward) -> None:
    g_f, g_r = dkdr_weights(_t(*p), _t(*q))
    assert float(g_f) == pytest.approx(g_forward, abs=1e-12)
    assert float(g_r) == pytest.approx(1 - g_forward, abs=1e-12)


def test_dkdr_weights_of_binary_units_are_one_half() -> None:
    """K = 2: the head is the top class alone and e_1 = e_2, so g_F = g_R = 1/2 (1e-12) for any
    pair of binary conditionals (1000 random pairs, ties p = 1/2 included)."""
    generator = torch.Generator().manual_seed(2)
    p_up = torch.cat([torch.rand(999, generator=generator, dtype=torch.float64), _t(0.5)])
    q_up = torch.rand(1000, generator=generator, dtype=torch.float64)
    g_f, g_r = dkdr_weights(torch.stack([1 - p_up, p_up], -1), torch.stack([1 - q_up, q_up], -1))
    torch.testing.assert_close(g_f, torch.full_like(g_f, 0.5), rtol=0, atol=1e-12)
    torch.testing.assert_close(g_r, torch.full_like(g_r, 0.5), rtol=0, atol=1e-12)


def test_dkdr_loss_mixes_forward_and_reverse_kl_with_detached_weights() -> None:
    """Batched (..., K): the loss equals g_F KL(p||q) + g_R KL(q||p) elementwise, the weights
    carry no gradient, every weight is finite in [0, 1], and a one-hot teacher (logits -inf)
    gives a finite forward KL with finite student gradients."""
    generator = torch.Generator().manual_seed(1)
    teacher = torch.randn(6, 5, dtype=torch.float64, generator=generator)
    student = torch.randn(6, 5, dtype=torch.float64, generator=generator, requires_grad=True)
    g_f, g_r = dkdr_weights(teacher.softmax(-1), student.softmax(-1))
    assert not g_f.requires_grad and bool(((g_f >= 0) & (g_f <= 1)).all())
    expected = g_f * forward_kl(teacher, student) + g_r * reverse_kl(teacher, student)
    torch.testing.assert_close(dkdr_loss(teacher, student), expected)
    one_hot = torch.full((5,), -math.inf, dtype=torch.float64)
    one_hot[2] = 0.0
    value = forward_kl(one_hot, student[0])
    (grad,) = torch.autograd.grad(value, student)
    assert float(value.detach()) == pytest.approx(
        -float(student[0].detach().log_softmax(-1)[2]), 1e-12
    )
    assert bool(torch.isfinite(grad).all())


# ----------------------------------------------------------------------- estimators vs exact
N_SPINS = 6


def _made(
    seed: int, depth: int, width: int, scale: float, visible: str = "spin", n_states: int = 2
) -> MADE:
    torch.manual_seed(seed)
    n_sites = N_SPINS if n_states == 2 else 5
    model = MADE(n_sites, depth=depth, width=width, visible=visible, n_states=n_states).double()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(scale * torch.randn_like(parameter))
    return model


def _exact_objective(divergence: str, teacher: MADE, student: MADE, lam: float) -> torch.Tensor:
    """The divergence by enumeration of all 2^N states, differentiable in the student."""
    states = torch.cat(
        list(enumerate_states(student.n_sites, spin=student.spin, levels=student.n_states))
    )
    log_p = teacher.log_prob(states).detach()
    log_q = student.log_prob(states)
    if divergence == "forward":
        return exact_forward_kl(log_p, log_q)
    if divergence in ("reverse", "minillm"):
        return exact_reverse_kl(log_p, log_q)
    sites = site_divergence(
        divergence, class_logits(teacher, states).detach(), class_logits(student, states), lam
    ).sum(-1)
    weights = log_q.exp() if divergence == "skew-reverse" else log_p.exp()
    return (weights * sites).sum()


def _flat_grad(loss: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(model.parameters()))])


def _batch_gradients(
    objective: Distill, student: MADE, seed: int, n_batches: int = 40, batch: int = 1000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard error of the gradient estimates of ``n_batches`` batches."""
    torch.manual_seed(seed)
    estimates = torch.stack(
        [_flat_grad(objective.loss(student, batch)[0], student) for _ in range(n_batches)]
    )
    return estimates.mean(0), estimates.std(0) / math.sqrt(n_batches)


@pytest.mark.parametrize("divergence", DIVERGENCES)
def test_estimator_matches_exact_gradient(divergence: str) -> None:
    """N = 6 spins, float64: a random MADE teacher (depth 2, width 16) and a different random
    student (depth 1, width 8). 40 batches of 1000 samples; every gradient component of the batch
    mean agrees with autograd of the exact objective (enumeration) within 4 standard errors
    (spread of the 40 batch estimates / sqrt(40)), and the gradient is resolved (its largest
    component exceeds 5 s.e.)."""
    teacher = _made(0, 2, 16, 0.5)
    student = _made(1, 1, 8, 0.3)
    objective = Distill(teacher, divergence, skew_lambda=0.1)
    exact = _flat_grad(_exact_objective(divergence, teacher, student, 0.1), student)
    mean, error = _batch_gradients(objective, student, 5)
    z = (mean - exact).abs() / (error + 1e-15)
    assert bool(((mean - exact).abs() <= 4 * error + 1e-12).all()), float(z.max())
    assert float(exact.abs().max()) > 5 * float(error.max())


UNIT_CASES = [("binary", 2, d, 6) for d in ("forward", "skew-reverse", "dkdr", "minillm")]
UNIT_CASES += [("categorical", 3, d, 7) for d in DIVERGENCES]


@pytest.mark.parametrize(("visible", "n_states", "divergence", "seed"), UNIT_CASES)
def test_estimators_on_other_units_match_exact_gradient(
    visible: str, n_states: int, divergence: str, seed: int
) -> None:
    """The same check on {0, 1} units (visible = "binary", N = 6) and on N = 5 categorical units
    with K = 3 states (3^5 states enumerated), MiniLLM at alpha = 0.5 with exact prefix
    weights."""
    teacher = _made(0, 2, 16, 0.5, visible, n_states)
    student = _made(1, 1, 8, 0.3, visible, n_states)
    objective = Distill(teacher, divergence, mix_alpha=0.5)
    exact = _flat_grad(_exact_objective(divergence, teacher, student, 0.1), student)
    mean, error = _batch_gradients(objective, student, seed)
    z = (mean - exact).abs() / (error + 1e-15)
    assert bool(((mean - exact).abs() <= 4 * error + 1e-12).all()), float(z.max())
    assert float(exact.abs().max()) > 5 * float(error.max())


def test_dkdr_weights_move_on_k_state_units() -> None:
    """K = 3: unlike two-state units, g_F differs from 1/2 at the teacher's samples."""
    teacher = _made(0, 2, 16, 0.5, "categorical", 3)
    student = _made(1, 1, 8, 0.3, "categorical", 3)
    x = teacher.sample(500)
    g_forward, _ = dkdr_weights(
        class_logits(teacher, x).softmax(-1), class_logits(student, x).softmax(-1)
    )
    assert float((g_forward - 0.5).abs().max()) > 0.1


def test_skewed_objectives_at_zero_lambda_are_the_sequence_kls() -> None:
    """By the chain rule, the site sums at lam = 0 equal KL(p||q) and KL(q||p) of the whole
    sequences (enumeration, 1e-10)."""
    teacher, student = _made(0, 2, 16, 0.5), _made(1, 1, 8, 0.3)
    with torch.no_grad():
        for skew, plain in (("skew-forward", "forward"), ("skew-reverse", "reverse")):
            assert float(_exact_objective(skew, teacher, student, 0.0)) == pytest.approx(
                float(_exact_objective(plain, teacher, student, 0.0)), abs=1e-10
            )


def test_distill_refuses_bad_settings() -> None:
    """One-line refusals; and the teacher ESS of a student equal to the teacher is 1."""
    teacher = _made(0, 1, 4, 0.1)
    with pytest.raises(BoltzgenError, match="divergence"):
        Distill(teacher, "jeffreys")
    symmetric = MADE(N_SPINS, depth=1, width=4, z2=True).double()
    with pytest.raises(BoltzgenError, match="z2"):
        Distill(symmetric, "dkdr")
    with pytest.raises(BoltzgenError, match="z2"):
        Distill(teacher, "skew-forward").loss(symmetric, 4)
    for divergence in ("reverse", "skew-reverse"):
        ess = Distill(teacher, divergence).loss(teacher, 64)[1]["ess_teacher"]
        assert float(ess) == pytest.approx(1.0, abs=1e-12)  # student = teacher: weights 1
    with pytest.raises(BoltzgenError, match="student"):
        Distill(teacher, "forward").loss(RBM(N_SPINS, 3, "spin").double(), 4)


# ----------------------------------------------------------------------- end to end
def _config(trainer: dict, model_seed: int, width: int) -> dict:
    return {
        "seed": model_seed,
        "device": "cpu",
        "dtype": "float64",
        "target": {"name": "sk", "n": N_SPINS, "beta": 1.5, "seed": 3},
        "model": {"name": "made", "depth": 1, "width": width},
        "trainer": {"batch_size": 256, "lr": 0.05, "log_every": 10, "progress": False, **trainer},
        "sample": {"n": 500},
    }


def _exact_log_prob(model: torch.nn.Module) -> torch.Tensor:
    return model.exact().log_prob


def test_a_teacher_run_distils_into_a_student_run(tmp_path) -> None:
    """A MADE teacher (depth 1, width 16) trained by reverse KL on SK N = 6, then a smaller
    student (width 8) distilled from its run directory by every divergence (100 steps each):
    the exact KL it minimises by enumeration (KL(p||q) for the teacher-sample ones, KL(q||p) for
    the student-sample ones) drops below 1/20 of the untrained student's (measured: from 1.82 /
    6.08 to 0.002 .. 0.016 nats), and a teacher of another size is refused in one line."""
    from boltzgen.workflow.registry import build_model, build_target, resolve_config
    from boltzgen.workflow.runs import load_run, train_run

    teacher_dir = tmp_path / "teacher"
    train_run(_config({"name": "reverse-kl-score", "steps": 80}, 0, 16), teacher_dir, False)
    _, _, teacher = load_run(teacher_dir)
    log_p = _exact_log_prob(teacher)
    untrained_config = resolve_config(
        _config({"name": "distill", "teacher": str(teacher_dir)}, 1, 8)
    )
    untrained = _exact_log_prob(build_model(untrained_config, build_target(untrained_config)))
    for divergence in DIVERGENCES:
        trainer = {"name": "distill", "teacher": str(teacher_dir), "divergence": divergence}
        student_dir = tmp_path / divergence
        summary = train_run(_config({**trainer, "steps": 100}, 1, 8), student_dir, False)
        assert summary["steps"] == 100 and summary["energy_evaluations"] == 0
        _, _, student = load_run(student_dir)
        kl = (
            exact_reverse_kl
            if divergence in ("reverse", "skew-reverse", "minillm")
            else exact_forward_kl
        )
        before, after = float(kl(log_p, untrained)), float(kl(log_p, _exact_log_prob(student)))
        assert after < before / 20, (divergence, before, after)
    small = tmp_path / "small"
    config = _config({"name": "reverse-kl-score", "steps": 2}, 0, 4)
    config["target"]["n"] = 4
    train_run(config, small, False)
    with pytest.raises(BoltzgenError, match="teacher") as raised:
        train_run(
            _config({"name": "distill", "teacher": str(small), "steps": 2}, 1, 4),
            tmp_path / "bad",
            False,
        )
    assert "\n" not in str(raised.value)


def _minillm_estimates(alpha: float, weights: str, normalize: bool = False):
    teacher, student = _made(0, 2, 16, 0.5), _made(1, 1, 8, 0.3)
    objective = Distill(
        teacher, "minillm", mix_alpha=alpha, prefix_weights=weights, length_normalize=normalize
    )
    exact = _flat_grad(_exact_objective("reverse", teacher, student, 0.0), student)
    return (*_batch_gradients(objective, student, 5), exact)


@pytest.mark.parametrize("alpha", [0.0, 0.5])
def test_minillm_with_exact_prefix_weights_is_unbiased(alpha: float) -> None:
    """Teacher-mixed sampling (each site from alpha p + (1 - alpha) q) with the exact prefix
    weights: the batch-mean gradient agrees with autograd of the exact KL(q||p) within 4 s.e.
    per component (setting as in the test above)."""
    mean, error, exact = _minillm_estimates(alpha, "exact")
    assert bool(((mean - exact).abs() <= 4 * error + 1e-12).all())


@pytest.mark.parametrize(
    ("alpha", "weights", "normalize"), [(0.2, "per-token", False), (0.0, "exact", True)]
)
def test_minillm_approximations_are_measurably_biased(alpha, weights, normalize) -> None:
    """The paper's per-token weights q_t/p~_t (alpha = 0.2) and the length-normalized future
    reward move the mean gradient away from grad KL(q||p) by more than 5 times the norm of its
    standard error (measured: 12.6 % and 18 % of |grad|, s.e. 1.3 % and 1.0 %; exact weights at
    alpha = 0.2: 1.4 %, i.e. within noise)."""
    mean, error, exact = _minillm_estimates(alpha, weights, normalize)
    assert float((mean - exact).norm()) > 5 * float(error.norm())


def test_distill_ising_template_trains_from_the_van_ising_run(tmp_path, monkeypatch) -> None:
    """The distill-ising template resolves, and after 2 steps of the van-ising teacher (written to
    runs/van-ising, the template's teacher path) it trains 2 steps end to end."""
    from boltzgen.workflow.config import parse_config_text
    from boltzgen.workflow.runs import train_run
    from boltzgen.workflow.templates import template_with

    monkeypatch.chdir(tmp_path)
    small = ["trainer.steps=2", "trainer.batch_size=16", "sample.n=50", "trainer.progress=false"]
    teacher = parse_config_text(template_with("van-ising", small))
    train_run(teacher, Path("runs/van-ising"), False)
    student = parse_config_text(template_with("distill-ising", small))
    summary = train_run(student, Path("runs/distill-ising"), False)
    assert summary["steps"] == 2 and summary["energy_evaluations"] == 0


@pytest.mark.parametrize("ppo_epochs", [1, 3])
def test_a_resumed_distill_run_ends_with_the_uninterrupted_runs_student(
    tmp_path, ppo_epochs: int
) -> None:
    """MiniLLM with teacher-mixed sampling (teacher and student draws from torch's global
    generator): 10 steps with a plain Trainer, then resumed to 20 by train_run, gives exactly the
    parameters of 20 uninterrupted steps (constant learning rate); with ppo_epochs = 3 the stop
    falls inside a batch's reuse, which the checkpoint carries. Power check: the same resume
    from a checkpoint whose RNG state was replaced ends elsewhere."""
    from boltzgen.io import load_checkpoint, save_checkpoint
    from boltzgen.trainers.loop import Trainer
    from boltzgen.workflow.registry import (
        build_model,
        build_objective,
        build_target,
        resolve_config,
        train_settings,
    )
    from boltzgen.workflow.runs import train_run

    teacher_dir = tmp_path / "teacher"
    train_run(_config({"name": "reverse-kl-score", "steps": 5}, 0, 16), teacher_dir, False)

    def config(steps: int) -> dict:
        trainer = {"name": "distill", "teacher": str(teacher_dir), "divergence": "minillm"}
        trainer["ppo_epochs"] = ppo_epochs
        return _config({**trainer, "steps": steps, "min_lr_factor": 1.0}, 1, 8)

    def resumed(run: Path, new_rng: bool) -> dict:
        resolved = resolve_config(config(10))
        target = build_target(resolved)
        model = build_model(resolved, target)
        objective = build_objective(resolved, target)
        Trainer(model, objective, train_settings(resolved, False), run_dir=run).fit()
        checkpoint = run / "checkpoints" / "last.pt"
        if new_rng:
            state = load_checkpoint(checkpoint)
            state["rng"]["torch"] = torch.Generator().manual_seed(99).get_state()
            save_checkpoint(checkpoint, state)
        train_run(config(20), run, False)
        return load_checkpoint(checkpoint)["model"]

    train_run(config(20), tmp_path / "reference", False)
    reference = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")["model"]
    same = resumed(tmp_path / "resumed", False)
    for name, tensor in reference.items():
        assert torch.equal(tensor, same[name]), name
    other = resumed(tmp_path / "other-rng", True)
    assert not all(torch.equal(tensor, other[name]) for name, tensor in reference.items())


# ----------------------------------------------------------------------- MiniLLM with PPO
def test_ppo_at_ratio_one_is_the_plain_minillm_gradient() -> None:
    """On one teacher-mixed batch (alpha = 0.2, exact weights) with the sampling student's log q
    equal to the current one (every ratio 1, PPO's first update), the surrogate's gradient
    equals plain MiniLLM's to 1e-12 (the surrogates' values differ: A rho against A log q)."""
    from boltzgen.trainers.distillation import _site_log_probs, minillm_surrogate

    teacher, student = _made(0, 2, 16, 0.5), _made(1, 1, 8, 0.3)
    torch.manual_seed(4)
    y = teacher_mixed_sample(teacher, student, 500, 0.2)
    with torch.no_grad():
        sampling = _site_log_probs(student, y)[1]
    plain, _ = minillm_surrogate(teacher, student, y, 0.2)
    ppo, _ = minillm_surrogate(teacher, student, y, 0.2, sampling_log_q=sampling)
    assert torch.allclose(_flat_grad(ppo, student), _flat_grad(plain, student), 0, 1e-12)


def test_ppo_clipping_stops_the_gradient_of_a_moved_ratio() -> None:
    """With the sampling student's log q one nat above the current one at every site (ratio
    1/e, below 1 - 0.2), a term with a positive advantage (a costly future) is clipped to the
    constant 0.8 A, so only the negative-advantage terms keep a long-term gradient; with a
    clip of 0.99 nothing is clipped: the two gradients differ, and the clipped one equals the
    gradient of the single-step part plus the unclipped negative-advantage terms."""
    from boltzgen.trainers import distillation as d

    teacher, student = _made(0, 2, 16, 0.5), _made(1, 1, 8, 0.3)
    torch.manual_seed(5)
    y = teacher_mixed_sample(teacher, student, 400, 0.0)
    with torch.no_grad():
        sampling = d._site_log_probs(student, y)[1] + 1.0
        teacher_logits, log_p = d._site_log_probs(teacher, y)
    clipped, _ = d.minillm_surrogate(teacher, student, y, sampling_log_q=sampling, clip_ratio=0.2)
    loose, _ = d.minillm_surrogate(teacher, student, y, sampling_log_q=sampling, clip_ratio=0.99)
    future = d._future_sum(sampling - log_p)
    advantage = future - d.leave_one_out(future)
    student_logits, log_q = d._site_log_probs(student, y)
    ratio = (log_q - sampling).exp()
    kept = torch.where(advantage < 0, advantage * ratio, torch.zeros_like(ratio))
    expected = (d.reverse_kl(teacher_logits, student_logits) + kept).sum(-1).mean()
    grad = _flat_grad(clipped, student)
    assert torch.allclose(grad, _flat_grad(expected, student), 0, 1e-12)
    assert float((grad - _flat_grad(loose, student)).norm()) > 0.1 * float(grad.norm())


def test_ppo_reuses_each_batch_for_ppo_epochs_steps() -> None:
    """ppo_epochs = 3: the generator advances on steps 1 and 4 only (a batch drawn, then reused
    twice), and the objective's state holds the batch in use; ppo_epochs with another
    divergence, or a clip outside (0, 1), is refused in one line."""
    teacher, student = _made(0, 2, 16, 0.5), _made(1, 1, 8, 0.3)
    objective = Distill(teacher, "minillm", ppo_epochs=3)
    torch.manual_seed(6)
    states = []
    for _ in range(4):
        objective.loss(student, 64)
        states.append(torch.get_rng_state())
    assert torch.equal(states[0], states[1]) and torch.equal(states[1], states[2])
    assert not torch.equal(states[2], states[3])
    saved = objective.state_dict()
    assert saved["uses"] == 1 and saved["samples"].shape == (64, N_SPINS)
    for kwargs, message in (
        ({"divergence": "forward", "ppo_epochs": 2}, "ppo_epochs"),
        ({"divergence": "minillm", "clip_ratio": 1.0}, "clip_ratio"),
    ):
        with pytest.raises(BoltzgenError, match=message):
            Distill(teacher, **kwargs)
