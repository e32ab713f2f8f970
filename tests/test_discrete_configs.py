"""Discrete targets, the RBM model and the discrete objectives, reached through configs and the
CLI.

References are independent of the package's enumeration code: brute-force sums over all states
in NumPy (Curie-Weiss energies and the RBM free energy written out by hand), the published log Z
values (Kaufman, magnetisation sum), and Monte Carlo estimates checked within 4 standard errors.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from boltzgen.cli.main import main
from boltzgen.errors import BoltzgenError
from boltzgen.io import load_checkpoint, save_checkpoint
from boltzgen.trainers import Trainer
from boltzgen.workflow.config import apply_overrides, parse_config_text
from boltzgen.workflow.registry import (
    build_model,
    build_objective,
    build_target,
    resolve_config,
    train_settings,
)
from boltzgen.workflow.runs import train_run
from boltzgen.workflow.templates import template_names, template_text

DISCRETE_TEMPLATES = [name for name in template_names() if name.startswith("discrete-")]
#: log Z of each template's target: Kaufman (1949) or the magnetisation sum or, for SK
#: N = 10, a brute-force sum in NumPy over the 1024 states (computed in the test).
PUBLISHED_LOG_Z = {"ising": 15.521915621335, "curie-weiss": 17.1900607409}

#: Ratio divergence on Curie-Weiss N = 8 (beta = 1.5): small enough to enumerate by hand.
TINY_RD = """
seed = 0
device = "cpu"
dtype = "float64"
[target]
name = "curie-weiss"
n = 8
beta = 1.5
[model]
name = "rbm"
n_hidden = 8
[trainer]
name = "ratio-divergence"
k_steps = 5
n_data = 4000
steps = {steps}
batch_size = 128
lr = 2e-2
min_lr_factor = 1.0
log_every = 10
checkpoint_every = 10
progress = false
[sample]
n = 500
"""


def _template_config(name: str, *overrides: str) -> dict[str, Any]:
    text = template_text(name)
    return apply_overrides(
        parse_config_text(text), ["device='cpu'", "trainer.progress=false", *overrides]
    )


def _all_spin_states(n: int) -> np.ndarray:
    return np.array(list(itertools.product([-1.0, 1.0], repeat=n)))


def _log_normalize(log_w: np.ndarray) -> np.ndarray:
    shift = log_w.max()
    return log_w - (shift + np.log(np.exp(log_w - shift).sum()))


def _rbm_log_q(state: dict[str, torch.Tensor], states: np.ndarray) -> np.ndarray:
    """log q(v) of all ``states`` from an RBM checkpoint: -F(v) = a.v + sum_j log(1 + exp(b_j +
    (vW)_j))."""
    w, a, b = (state[k].double().numpy() for k in ("weight", "visible_bias", "hidden_bias"))
    return _log_normalize(states @ a + np.logaddexp(0.0, states @ w + b).sum(1))


def _curie_weiss_log_p(n: int, beta: float, states: np.ndarray) -> np.ndarray:
    return _log_normalize(beta * states.sum(1) ** 2 / (2 * n))


def _forward_kl(log_p: np.ndarray, log_q: np.ndarray) -> float:
    return float((np.exp(log_p) * (log_p - log_q)).sum())


@pytest.mark.parametrize("name", DISCRETE_TEMPLATES)
def test_template_resolves_trains_and_reports_exact_numbers(name: str, tmp_path: Path) -> None:
    """Each discrete template trains 3 steps into a run dir; summary numbers match references.

    log Z: published values (1e-8) or a float64 brute force (1e-6: the templates' float32 rounds
    the SK couplings by ~6e-8 relative); the summary's exact KL(q||p) agrees with
    the Monte Carlo estimate mean(log q + u) + log Z over the 2000 written samples within 4 s.e.
    """
    resolved = resolve_config(_template_config(name))
    assert resolved["model"]["name"] == "rbm"
    assert len(DISCRETE_TEMPLATES) >= 4
    summary = train_run(
        _template_config(name, "trainer.steps=3", "sample.n=2000"),
        tmp_path / "run",
        progress=False,
    )
    run = tmp_path / "run"
    assert (run / "config.toml").is_file() and (run / "checkpoints" / "last.pt").is_file()
    rows = (run / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,") and rows[-1].split(",")[0] == "3"
    assert json.loads((run / "summary.json").read_text()) == summary
    assert summary["steps"] == 3 and summary["n_samples"] == 2000

    target = resolved["target"]
    if target["name"] in PUBLISHED_LOG_Z:
        assert summary["log_z"] == pytest.approx(PUBLISHED_LOG_Z[target["name"]], abs=1e-8)
    else:  # SK: J_ij ~ N(0, 1/N) from default_rng(seed), upper triangle row by row
        n = target["n"]
        upper = np.triu(
            np.random.default_rng(target["seed"]).standard_normal((n, n)) / math.sqrt(n), k=1
        )
        states = _all_spin_states(n)
        log_w = target["beta"] * 0.5 * np.einsum("si,ij,sj->s", states, upper + upper.T, states)
        shift = log_w.max()
        assert summary["log_z"] == pytest.approx(
            shift + np.log(np.exp(log_w - shift).sum()), abs=1e-6
        )

    drawn = torch.load(run / "samples" / "samples.pt", weights_only=True)
    values = (drawn["log_q"] + drawn["reduced_energies"]).double() + summary["log_z"]
    standard_error = float(values.std()) / math.sqrt(values.numel())
    assert abs(float(values.mean()) - summary["exact_reverse_kl"]) < 4 * standard_error
    assert summary["exact_forward_kl"] > 0 and summary["exact_reverse_kl"] > 0
    # RD = Var_p l + Var_q l + (KL(p||q) + KL(q||p))^2 >= the last term
    assert (
        summary["exact_ratio_divergence"]
        >= (summary["exact_forward_kl"] + summary["exact_reverse_kl"]) ** 2
    )
    assert 0 < summary["ess"] <= 1


def test_ratio_divergence_lowers_the_exact_forward_kl(tmp_path: Path) -> None:
    """150 RD steps on Curie-Weiss N = 8: exact KL(p||q) falls below 1/10 of the initial one.

    Measured: 1.973 -> 0.0106 nats (reverse KL 0.0106, RD 0.043) in about 1 s.

    Both KLs are recomputed by hand over the 256 states (NumPy) from the model's parameters and
    must equal the summary's value to 1e-9.
    """
    config = parse_config_text(TINY_RD.format(steps=150))
    states = _all_spin_states(8)
    log_p = _curie_weiss_log_p(8, 1.5, states)
    resolved = resolve_config(config)
    initial = build_model(resolved, build_target(resolved))
    kl_initial = _forward_kl(log_p, _rbm_log_q(initial.state_dict(), states))
    summary = train_run(config, tmp_path / "run", progress=False)
    trained = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    kl_trained = _forward_kl(log_p, _rbm_log_q(trained, states))
    assert summary["exact_forward_kl"] == pytest.approx(kl_trained, abs=1e-9)
    assert kl_initial > 1.0  # a near-uniform RBM vs a two-mode ferromagnet
    assert kl_trained < kl_initial / 10, (kl_initial, kl_trained)


def _resume_config(steps: int) -> dict[str, Any]:
    return parse_config_text(TINY_RD.format(steps=steps))


def _train_ten_steps_then_resume(
    run_dir: Path, edit_checkpoint: Any = None
) -> dict[str, torch.Tensor]:
    """Train 10 of 20 steps with a plain Trainer (lr constant), then resume with train_run to
    20."""
    resolved = resolve_config(_resume_config(10))
    target = build_target(resolved)
    model = build_model(resolved, target)
    Trainer(
        model, build_objective(resolved, target), train_settings(resolved, False), run_dir=run_dir
    ).fit()
    checkpoint = run_dir / "checkpoints" / "last.pt"
    if edit_checkpoint is not None:
        state = load_checkpoint(checkpoint)
        edit_checkpoint(state)
        save_checkpoint(checkpoint, state)  # a fresh digest for the edited content
    train_run(_resume_config(20), run_dir, progress=False)
    return load_checkpoint(checkpoint)["model"]


def test_resume_restores_the_persistent_chains(tmp_path: Path) -> None:
    """A run checkpointed at step 10 and resumed ends with exactly the uninterrupted run's RBM.

    Power check: the same resume with the checkpoint's chains dropped ends elsewhere.
    """
    train_run(_resume_config(20), tmp_path / "reference", progress=False)
    reference = load_checkpoint(tmp_path / "reference" / "checkpoints" / "last.pt")
    chains = reference["objective"]["chains"]["states"]
    assert chains.shape == (128, 8) and set(chains.unique().tolist()) <= {-1.0, 1.0}

    resumed = _train_ten_steps_then_resume(tmp_path / "resumed")
    for name, tensor in reference["model"].items():
        assert torch.equal(tensor, resumed[name]), name

    def drop_chains(state: dict[str, Any]) -> None:
        state["objective"]["chains"]["states"] = None

    without_chains = _train_ten_steps_then_resume(tmp_path / "no-chains", drop_chains)
    assert not torch.equal(reference["model"]["weight"], without_chains["weight"])


def test_boltzgen_train_and_sample_on_a_discrete_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``boltzgen init`` + ``train --json`` + ``sample --json`` through the CLI entry point.

    The run's exact KL(q||p) is checked against a hand-written float64 enumeration of the RBM and
    the SK glass (NumPy; 1e-6, as the config's float32 rounds the couplings), and ``sample``'s ESS
    against the one the samples' log-weights give.
    """
    config = tmp_path / "rks.toml"
    assert main(["init", "discrete-reverse-kl-score", "-o", str(config)]) == 0
    run_dir = tmp_path / "run"
    capsys.readouterr()
    code = main(
        [
            "train",
            str(config),
            "-o",
            str(run_dir),
            "--json",
            "--set",
            "trainer.steps=30",
            "--set",
            "sample.n=1000",
            "--set",
            "device='cpu'",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    summary = json.loads(out)
    assert summary["run_dir"] == str(run_dir) and summary["steps"] == 30
    assert summary["energy_evaluations"] == 30 * 256  # batch_size target evaluations per step

    n = 10
    upper = np.triu(np.random.default_rng(0).standard_normal((n, n)) / math.sqrt(n), k=1)
    states = _all_spin_states(n)
    log_p = _log_normalize(1.5 * 0.5 * np.einsum("si,ij,sj->s", states, upper + upper.T, states))
    log_q = _rbm_log_q(load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"], states)
    assert summary["exact_reverse_kl"] == pytest.approx(
        float((np.exp(log_q) * (log_q - log_p)).sum()), abs=1e-6
    )

    out_file = tmp_path / "more.pt"
    assert main(["sample", str(run_dir), "-n", "300", "-o", str(out_file), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    drawn = torch.load(out_file, weights_only=True)
    log_w = drawn["log_weights"].double()
    assert drawn["samples"].shape == (300, n) and set(drawn["samples"].unique().tolist()) <= {
        -1.0,
        1.0,
    }
    assert result["ess"] == pytest.approx(
        float(log_w.logsumexp(0).mul(2).exp() / (300 * (2 * log_w).exp().sum())), rel=1e-6
    )


def test_training_data_from_mcmc_and_files_match_the_target(tmp_path: Path) -> None:
    """Objective data from Swendsen-Wang, parallel tempering and a file have the target's
    statistics.

    Curie-Weiss N = 8, beta = 1.5: E_p[m^2] by brute force in NumPy; each sample mean of m^2 (4000
    states, chains recorded every 5 steps) must lie within 4 standard errors (from 40 independent
    chains' means).
    """
    states = _all_spin_states(8)
    exact_m2 = float((np.exp(_curie_weiss_log_p(8, 1.5, states)) * states.mean(1) ** 2).sum())
    base = parse_config_text(TINY_RD.format(steps=1))
    resolved = resolve_config(base)
    target = build_target(resolved)
    common = {"n_data": 4000, "mcmc_chains": 40, "mcmc_burn_in": 50, "mcmc_thin": 5}
    for method in ("swendsen-wang", "parallel-tempering"):
        trainer = {**base["trainer"], "data": "mcmc", "mcmc_method": method, **common}
        objective = build_objective(resolve_config({**base, "trainer": trainer}), target)
        m2 = objective.data.mean(1).square().reshape(-1, 40)  # chain-major rows: t * chains + c
        per_chain = m2.mean(0)
        standard_error = float(per_chain.std()) / math.sqrt(40)
        assert abs(float(per_chain.mean()) - exact_m2) < 4 * standard_error, method

    data_file = tmp_path / "states.npy"
    np.save(data_file, states[::3])
    trainer = {**base["trainer"], "data": str(data_file)}
    objective = build_objective(resolve_config({**base, "trainer": trainer}), target)
    assert torch.equal(objective.data, torch.from_numpy(states[::3]))


RBM_TARGET = """
seed = 0
device = "cpu"
dtype = "float64"
[target]
name = "rbm"
n_visible = 8
n_hidden = 4
visible = "binary"
init_std = 1.0
[model]
name = "rbm"
n_hidden = 6
[trainer]
name = "forward-kl-pcd"
data = "mcmc"
n_data = 4000
mcmc_chains = 40
mcmc_burn_in = 50
mcmc_thin = 5
steps = 5
batch_size = 64
progress = false
[sample]
n = 100
"""


def test_rbm_target_gibbs_data_and_binary_model(tmp_path: Path) -> None:
    """A random binary RBM as target: block-Gibbs data have its exact mean (4 s.e., 40 chains),
    the model RBM gets binary units, and the summary's log Z equals a NumPy sum over 2**8
    states."""
    config = parse_config_text(RBM_TARGET)
    resolved = resolve_config(config)
    target = build_target(resolved)
    w, a, b = (
        t.detach().double().numpy()
        for t in (target.rbm.weight, target.rbm.visible_bias, target.rbm.hidden_bias)
    )
    states = np.array(list(itertools.product([0.0, 1.0], repeat=8)))
    log_w = states @ a + np.logaddexp(0.0, states @ w + b).sum(1)
    exact_mean = float((np.exp(_log_normalize(log_w)) * states.mean(1)).sum())
    data = build_objective(resolved, target).data
    assert set(data.unique().tolist()) == {0.0, 1.0}
    per_chain = data.mean(1).reshape(-1, 40).mean(0)
    assert abs(float(per_chain.mean()) - exact_mean) < 4 * float(per_chain.std()) / math.sqrt(40)

    summary = train_run(config, tmp_path / "run", progress=False)
    shift = log_w.max()
    assert summary["log_z"] == pytest.approx(
        shift + math.log(np.exp(log_w - shift).sum()), abs=1e-10
    )
    drawn = torch.load(tmp_path / "run" / "samples" / "samples.pt", weights_only=True)
    assert set(drawn["samples"].unique().tolist()) <= {0.0, 1.0}


def _with(section: str, **values: Any) -> dict[str, Any]:
    """The tiny RD config with ``values`` merged into ``[section]``."""
    config = parse_config_text(TINY_RD.format(steps=1))
    config[section] = {**config[section], **values}
    return config


def _replacing(**tables: dict[str, Any]) -> dict[str, Any]:
    """The tiny RD config with whole tables replaced."""
    return {**parse_config_text(TINY_RD.format(steps=1)), **tables}


BAD_CONFIGS = {
    "unknown key": (_with("trainer", k_step=3), "unknown key(s) for 'ratio-divergence': k_step"),
    "wrong type": (_with("trainer", n_data="many"), "n_data = 'many': expected an int"),
    "unknown target": (_with("target", name="clock"), "name = 'clock' is unknown"),
    "unknown mcmc method": (
        _with("trainer", data="mcmc", mcmc_method="wolff"),
        "mcmc_method = 'wolff'",
    ),
    "out of range": (_with("trainer", mcmc_thin=0), "mcmc_thin = 0 is out of range"),
    "too large to enumerate": (
        _replacing(target={"name": "ising", "L": 5}, trainer={"name": "ratio-divergence"}),
        'data = "exact" enumerates all 2**N states and needs at most 2**24',
    ),
    "gibbs on a spin model": (
        _with("trainer", data="mcmc", mcmc_method="gibbs"),
        "mcmc_method = 'gibbs' does not apply",
    ),
    "rbm on a continuous target": (
        _replacing(target={"name": "double-well"}),
        "[model] needs a discrete target",
    ),
    "missing data file": (
        _with("trainer", data="nowhere.npy"),
        "data file nowhere.npy does not exist",
    ),
    "bad visible kind": (
        _replacing(target={"name": "rbm", "visible": "ising"}),
        "[target] visible = 'ising': choose",
    ),
    "both rbm layers too large": (
        _replacing(target={"name": "ising", "L": 5}, model={"name": "rbm", "n_hidden": 25}),
        "one layer needs <= 24 units",
    ),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_discrete_configs_fail_with_one_line(case: str, tmp_path: Path) -> None:
    """Unknown keys and bad values raise a one-line BoltzgenError that names the problem."""
    config, expected = BAD_CONFIGS[case]
    with pytest.raises(BoltzgenError) as error:
        train_run(copy.deepcopy(config), tmp_path / "run", progress=False)
    message = str(error.value)
    assert "\n" not in message and expected in message, message


@pytest.mark.parametrize("values", [np.array([[0.0, 1.0] * 4]), np.ones((5, 7))])
def test_data_files_of_the_wrong_kind_are_refused(values: np.ndarray, tmp_path: Path) -> None:
    """A data file with {0, 1} values for a spin target, or the wrong number of spins, is
    refused."""
    path = tmp_path / "bad.npy"
    np.save(path, values)
    with pytest.raises(BoltzgenError, match=r"^\[trainer\] data file .*bad\.npy holds"):
        train_run(_with("trainer", data=str(path)), tmp_path / "run", progress=False)
