"""Objectives behave as theory says on toy targets; training resumes exactly; steps skip bad
updates.

Sizes are chosen to fit the 30 s per-test budget on 2 CPU cores; each test states its sample size.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from boltzgen.energy.logprob import LogProbEnergy
from boltzgen.energy.toy import GaussianMixture2D, ManyWell
from boltzgen.flows import CouplingFlow, make_prior, real
from boltzgen.trainers import ForwardKL, ReverseKL, Trainer, TrainSettings
from boltzgen.trainers.optim import MaskedAdam


def small_flow(
    dim: int,
    scale: float = 1.0,
    n_layers: int = 6,
    hidden: int = 64,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> CouplingFlow:
    torch.manual_seed(seed)
    domains = [real()] * dim
    prior = make_prior(domains, kind="normal", loc=0.0, scale=scale)
    return CouplingFlow(
        domains, n_layers=n_layers, hidden=hidden, depth=2, bins=8, prior=prior
    ).to(dtype)


def fit(model, objective, steps: int, batch: int = 256, lr: float = 3e-3) -> None:
    Trainer(
        model,
        objective,
        TrainSettings(
            steps=steps, batch_size=batch, lr=lr, warmup_steps=20, progress=False, log_every=50
        ),
    ).fit()


def mode_masses(target: GaussianMixture2D, model, n: int = 20_000) -> torch.Tensor:
    with torch.no_grad():
        x = model.sample(n)
    return torch.bincount(target.mode_index(x), minlength=8).double() / n


def test_forward_kl_covers_all_modes() -> None:
    """Maximum likelihood on 20k exact samples: every one of the 8 modes gets >= 5% of 2e4
    samples."""
    torch.manual_seed(0)
    target = GaussianMixture2D()
    model = small_flow(2, scale=3.0)
    fit(model, ForwardKL(target.sample(20_000).float()), steps=600)
    masses = mode_masses(target, model)
    assert torch.all(masses >= 0.05), masses


def test_reverse_kl_mode_seeking_vs_high_temperature() -> None:
    """From a narrow start, reverse KL at T = 1 drops modes; at T = 4 it keeps all 8 (>= 5%
    each)."""
    target = GaussianMixture2D()
    torch.manual_seed(1)
    cold = small_flow(2, scale=0.5, seed=1)
    fit(cold, ReverseKL(target), steps=500)
    torch.manual_seed(1)
    hot = small_flow(2, scale=0.5, seed=1)
    fit(hot, ReverseKL(target, temperature=4.0), steps=500)
    cold_masses, hot_masses = mode_masses(target, cold), mode_masses(target, hot)
    assert int((cold_masses >= 0.05).sum()) < 8, cold_masses
    assert torch.all(hot_masses >= 0.05), hot_masses


def test_reverse_kl_fits_correlated_gaussian() -> None:
    """A 4-D correlated Gaussian (log Z = 0): KL(q||p) < 0.02 nats, estimated from 1e5 samples."""
    torch.manual_seed(2)
    cov = torch.tensor(
        [[1.0, 0.8, 0.0, 0.3], [0.8, 1.5, 0.2, 0.0], [0.0, 0.2, 0.5, 0.1], [0.3, 0.0, 0.1, 1.0]],
        dtype=torch.float64,
    )
    gauss = torch.distributions.MultivariateNormal(
        torch.tensor([0.5, -1.0, 0.0, 1.0], dtype=torch.float64), cov
    )
    target = LogProbEnergy(gauss.log_prob, (4,))
    model = small_flow(4, n_layers=4, hidden=64, seed=2)
    fit(model, ReverseKL(target), steps=1000, batch=256, lr=3e-3)
    with torch.no_grad():
        x, log_q = model.sample_and_log_prob(100_000)
        diff = log_q.double() - gauss.log_prob(x.double())
    kl, se = float(diff.mean()), float(diff.std() / math.sqrt(diff.numel()))
    assert kl + 4 * se < 0.02, (kl, se)


def test_forward_kl_on_many_well_recovers_log_z() -> None:
    """ManyWell-32: ML on 5e4 exact samples; importance-sampling log Z from 5e4 flow samples is
    exact within 4 s.e."""
    torch.manual_seed(3)
    target = ManyWell()
    model = small_flow(32, scale=2.0, n_layers=4, hidden=64, seed=3)
    fit(
        model,
        ForwardKL(target.sample(50_000, generator=torch.Generator().manual_seed(3)).float()),
        steps=600,
        batch=256,
        lr=3e-3,
    )
    with torch.no_grad():
        x, log_q = model.sample_and_log_prob(50_000)
        log_w = -target.energy(x.double()) - log_q.double()
    n = log_w.numel()
    log_z_hat = float(torch.logsumexp(log_w, 0) - math.log(n))
    w = torch.exp(log_w - log_w.max())
    se = float(w.std() / (w.mean() * math.sqrt(n)))  # delta method: s.e. of log of the mean weight
    assert abs(log_z_hat - target.log_z) < 4 * se + 1e-3, (log_z_hat, target.log_z, se)
    assert se < 0.1  # the estimate is informative


def test_masked_step_skips_non_finite_updates() -> None:
    """A NaN gradient leaves parameters and moments untouched; the skip is counted on the
    device."""
    torch.manual_seed(0)
    param = torch.nn.Parameter(torch.randn(5))
    opt = MaskedAdam([param], lr=0.1)
    param.grad = torch.ones(5)
    opt.step(torch.tensor(True))
    before = param.detach().clone(), opt.exp_avg[0].clone(), opt.accepted.clone()
    param.grad = torch.full((5,), float("nan"))
    opt.step(torch.isfinite(param.grad).all())
    assert (
        torch.equal(param.detach(), before[0])
        and torch.equal(opt.exp_avg[0], before[1])
        and opt.accepted == before[2]
    )


def test_masked_adam_matches_torch_adamw() -> None:
    """With every step accepted, MaskedAdam is AdamW (independent reference: torch.optim.AdamW)."""
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(7, dtype=torch.float64))
    b = torch.nn.Parameter(a.detach().clone())
    ours, ref = (
        MaskedAdam([a], lr=0.01, weight_decay=0.1),
        torch.optim.AdamW([b], lr=0.01, weight_decay=0.1),
    )
    for _ in range(20):
        g = torch.randn(7, dtype=torch.float64)
        a.grad, b.grad = g.clone(), g.clone()
        ours.step(torch.tensor(True))
        ref.step()
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_energy_cap_and_top_k_shape_the_loss_only() -> None:
    """The cap and top-k change the loss, never the reported KL or ESS diagnostics."""
    target = GaussianMixture2D().double()
    model = small_flow(2, scale=4.0, dtype=torch.float64)
    torch.manual_seed(5)
    plain_loss, plain = ReverseKL(target).loss(model, 1000)
    torch.manual_seed(5)
    capped_loss, capped = ReverseKL(target, energy_cap=2.0, drop_top_k=10).loss(model, 1000)
    assert float(capped_loss.detach()) < float(plain_loss.detach())
    for key in ("kl", "ess", "energy"):
        assert float(capped[key]) == float(plain[key])


RESUME_CONFIG = """
seed = 7
device = "cpu"
dtype = "float64"
[target]
name = "double-well"
dim = 4
[model]
name = "coupling-flow"
n_layers = 4
hidden = 32
[trainer]
name = "reverse-kl"
steps = {steps}
batch_size = 128
lr = 2e-3
warmup_steps = 10
log_every = 10
checkpoint_every = 10
[sample]
n = 100
"""


def _train_command(config: Path, run_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "boltzgen",
        "train",
        str(config),
        "-o",
        str(run_dir),
        "--no-progress",
    ]


def test_killed_run_resumes_to_the_same_parameters(tmp_path: Path) -> None:
    """SIGKILL after a checkpoint, resume: final parameters equal an uninterrupted run's
    exactly."""
    config = tmp_path / "c.toml"
    config.write_text(RESUME_CONFIG.format(steps=200))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    reference = subprocess.run(
        _train_command(config, tmp_path / "ref"), env=env, capture_output=True, text=True
    )
    assert reference.returncode == 0, reference.stderr
    killed_dir = tmp_path / "killed"
    process = subprocess.Popen(
        _train_command(config, killed_dir),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoint = killed_dir / "checkpoints" / "last.pt"
    deadline = time.time() + 60
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists()
    from boltzgen.io import load_checkpoint

    interrupted_at = load_checkpoint(checkpoint)["step"]
    assert interrupted_at < 200, "the run finished before it could be killed; make it longer"
    resumed = subprocess.run(
        _train_command(config, killed_dir), env=env, capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr
    final_ref = load_checkpoint(tmp_path / "ref" / "checkpoints" / "last.pt")
    final_resumed = load_checkpoint(checkpoint)
    assert final_resumed["step"] == final_ref["step"] == 200
    for name, tensor in final_ref["model"].items():
        assert torch.equal(tensor, final_resumed["model"][name]), name
    steps_logged = [
        int(line.split(",")[0])
        for line in (killed_dir / "metrics.csv").read_text().splitlines()[1:]
    ]
    assert steps_logged == sorted(set(steps_logged)) and steps_logged[-1] == 200


def test_training_step_is_sync_free(device: torch.device, dtype: torch.dtype) -> None:
    """Steps of reverse KL and forward KL through the shared loop, on the --device, in float32
    and float64 (parameters, samples and losses stay in the dtype).

    On CUDA they run under ``torch.cuda.set_sync_debug_mode("error")`` (with ``log_every`` past
    the last step, so the only device read is the final one outside the guarded steps): any
    host-device synchronisation inside sampling, log_prob, the energy or the optimiser step fails
    the test. On the CPU the same steps must change the parameters and keep them finite.
    """
    torch.manual_seed(0)
    target = GaussianMixture2D().to(device, dtype)
    model = small_flow(2, n_layers=4, hidden=32).to(device, dtype)
    before = [p.detach().clone() for p in model.parameters()]
    objectives = [
        ReverseKL(target, temperature=2.0, energy_cap=5.0, drop_top_k=3),
        ForwardKL(target.sample(1000).to(device, dtype)),
    ]
    for objective in objectives:
        trainer = Trainer(
            model,
            objective,
            TrainSettings(
                steps=5, batch_size=64, log_every=1000, checkpoint_every=0, progress=False
            ),
        )
        accumulated: dict[str, torch.Tensor] = {}
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("error")
        try:
            for _ in range(5):
                trainer._train_step(accumulated)
        finally:
            if device.type == "cuda":
                torch.cuda.set_sync_debug_mode("default")
        assert int(trainer.skipped) == 0
    after = list(model.parameters())
    assert all(p.dtype == dtype and torch.isfinite(p).all() for p in after)
    assert any(not torch.equal(a.detach(), b) for a, b in zip(after, before))
