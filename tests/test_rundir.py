"""RunDir: the one settings check of training runs and MD recordings."""

from __future__ import annotations

from pathlib import Path

import pytest

from boltzgen.errors import BoltzgenError
from boltzgen.io import RunDir


@pytest.mark.parametrize("name", ["settings.json", "config.toml"])
def test_claim_writes_once_resumes_and_refuses_other_settings(tmp_path: Path, name: str) -> None:
    settings = {"seed": 1, "trainer": {"lr": 1e-3, "steps": 10, "cap": None}, "tags": [1, 2]}
    run = RunDir(tmp_path / "run", name)
    assert run.claim(settings) is False and run.settings_path.is_file()
    written = run.settings_path.read_text()
    assert RunDir(tmp_path / "run", name).claim(settings) is True
    assert run.settings_path.read_text() == written  # a resume rewrites nothing
    other = {**settings, "trainer": {"lr": 1e-3, "steps": 20, "cap": None}, "seed": 2}
    with pytest.raises(BoltzgenError, match=r"different settings \(seed, trainer.steps\)"):
        RunDir(tmp_path / "run", name).claim(other)
    assert run.settings_path.read_text() == written
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [name]  # no temp files


def test_canonical_form_keeps_old_records_resumable(tmp_path: Path) -> None:
    """A record written before a key existed compares equal once the key gets its default."""
    RunDir(tmp_path, "config.toml").claim({"steps": 10})
    run = RunDir(tmp_path, "config.toml", canonical=lambda old: {"lr": 1e-3, **old})
    assert run.claim({"steps": 10, "lr": 1e-3}) is True
    with pytest.raises(BoltzgenError, match=r"\(lr\)"):
        run.claim({"steps": 10, "lr": 1e-2})


def test_a_corrupted_settings_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "settings.json").write_text("{not json")
    with pytest.raises(BoltzgenError, match="settings.json is corrupted"):
        RunDir(tmp_path).claim({"a": 1})
