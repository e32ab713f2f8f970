"""Every shipped molecule template (TA-BG presets, baselines, demo) resolves and trains end to end.

Each template runs with its own model and target but shrunk schedules (a few steps, tiny buffers);
the energy-evaluation counter must equal the TA-BG budget, Schopmans & Friederich 2025 (pretraining
batches plus every buffer sample for TA-BG, batch x steps for reverse KL, zero for forward KL).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from boltzgen.molecule.molecule import Molecule
from boltzgen.workflow.config import apply_overrides, parse_config_text
from boltzgen.workflow.runs import train_run
from boltzgen.workflow.templates import template_names, template_text

#: Templates of molecule targets that train from the target alone (a distillation template
#: needs its teacher's run: tests/test_flow_distillation.py trains it from one).
MOLECULE_TEMPLATES = [
    name
    for name in template_names()
    if 'name = "molecule"' in template_text(name) and 'name = "distill"' not in template_text(name)
]
TABG_SHRINK = [
    "trainer.pretrain_steps=2",
    "trainer.pretrain_batch_size=8",
    "trainer.pretrain_warmup_steps=1",
    "trainer.drop_top_k=1",
    "trainer.n_rungs=1",
    "trainer.extra_final_rungs=1",
    "trainer.buffer_samples=24",
    "trainer.resample_size=16",
    "trainer.rung_steps=2",
    "trainer.rung_batch_size=8",
    "trainer.chunk_size=16",
]
PLAIN_SHRINK = ["trainer.steps=2", "trainer.batch_size=8", "trainer.warmup_steps=1"]


def _shrunk(name: str, tmp_path: Path) -> dict:
    config = parse_config_text(template_text(name))
    trainer = config["trainer"]["name"]
    overrides = ["sample.n=16", 'device="cpu"'] + (
        TABG_SHRINK if trainer == "tabg" else PLAIN_SHRINK
    )
    if trainer in ("reverse-kl", "renyi"):
        overrides.append("trainer.drop_top_k=1")
    if trainer in ("forward-kl", "cumulant-gan"):
        molecule = Molecule.from_catalog(config["target"]["system"])
        noise = np.random.default_rng(0).normal(scale=0.002, size=(32, molecule.n_atoms, 3))
        np.savez(
            tmp_path / "train.npz",
            positions=(np.asarray(molecule.positions)[None] + noise).astype(np.float32),
        )
        overrides.append(f'trainer.data="{tmp_path / "train.npz"}"')
    return apply_overrides(config, overrides)


def test_every_molecule_preset_is_listed() -> None:
    assert {
        "tabg-alanine-dipeptide-paper",
        "tabg-alanine-dipeptide-gpu-fast",
        "tabg-alanine-dipeptide-cpu",
        "tabg-ala3-paper",
        "tabg-ala5-paper",
        "reverse-kl-alanine-dipeptide",
        "forward-kl-alanine-dipeptide",
        "gan-alanine-dipeptide",
        "renyi-alanine-dipeptide",
    } <= set(MOLECULE_TEMPLATES)


@pytest.mark.parametrize("name", MOLECULE_TEMPLATES)
def test_molecule_template_trains_and_counts_energy_evaluations(name: str, tmp_path: Path) -> None:
    config = _shrunk(name, tmp_path)
    summary = train_run(config, tmp_path / "run", progress=False)
    trainer = config["trainer"]
    expected = {
        "tabg": 2 * 8 + 2 * 24,  # pretraining batches + (n_rungs + extra_final_rungs) buffers
        "reverse-kl": 2 * 8,
        "renyi": 2 * 8,
        "forward-kl": 0,
        "cumulant-gan": 0,
    }[trainer["name"]]
    assert summary["energy_evaluations"] == expected
    assert summary["n_samples"] == 16 and 0.0 < summary["ess"] <= 1.0
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
    if "reweighted_basin_populations" in summary:  # one phi/psi pair: alanine dipeptide
        assert sum(summary["reweighted_basin_populations"].values()) == pytest.approx(1.0)
        assert all(0 <= se <= 0.5 for se in summary["reweighted_basin_se"].values())
        at_reference = config["target"].get("system") == "alanine-dipeptide" and (
            summary["sample_temperature"] == 300.0
        )
        assert ("md_reference_basin_populations" in summary) == at_reference, name
