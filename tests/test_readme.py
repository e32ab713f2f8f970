"""Every Python example of the README runs as written and gives what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
EXAMPLES = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_readme_example_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(EXAMPLES[index], f"README.md example {index + 1}", "exec"), namespace)
    if "log_w" in namespace:  # the flow examples: finite log-weights of the right shape
        log_w, x = namespace["log_w"], namespace["x"]
        assert log_w.shape == (x.shape[0],) and bool(log_w.isfinite().all())
    if "summary" in namespace:  # the config example: a known log Z gives the exact KL
        summary = namespace["summary"]
        assert 0.0 <= summary["kl"] < 0.5 and 0.0 < summary["ess"] <= 1.0
        assert namespace["resolved"]["model"]["hidden"] == 32
