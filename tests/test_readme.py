"""Every Python example of the README runs as written and gives what it says."""

from __future__ import annotations

from pathlib import Path

import pytest
from markdown_examples import fenced_blocks, run_python

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = fenced_blocks(README.read_text(), "python")


def test_the_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace = run_python(EXAMPLES[index], f"README.md example {index + 1}")
    if "log_w" in namespace:  # the flow examples: finite log-weights of the right shape
        log_w, x = namespace["log_w"], namespace["x"]
        assert log_w.shape == (x.shape[0],) and bool(log_w.isfinite().all())
    if "summary" in namespace:  # the config example: a known log Z gives the exact KL
        summary = namespace["summary"]
        assert 0.0 <= summary["kl"] < 0.5 and 0.0 < summary["ess"] <= 1.0
        assert namespace["resolved"]["model"]["hidden"] == 32
