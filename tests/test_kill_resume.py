"""Crash consistency, bounded: SIGKILL ``boltzgen train`` (TA-BG across its rung boundaries) and
``boltzgen md`` (replica exchange) at random moments, rerun until done, and compare the final
parameters / every recorded MD frame bit for bit with an uninterrupted run.

The driver is ``analysis/fault_injection.py`` (which also covers reverse KL and a discrete
objective, and many more kills: ``--kills N``); here one kill-and-rerun sequence per case.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

from fault_injection import run_kill_cases  # noqa: E402


def test_killed_tabg_and_md_runs_resume_bit_identically(tmp_path):
    counts = run_kill_cases(tmp_path, kills=1, rng=random.Random(3), only=["tabg", "md"])
    for case in ("tabg", "md"):
        assert counts.get(f"{case}: kills injected", 0) >= 1, counts
        assert counts.get(f"{case}: failed reruns", 0) == 0, counts
        assert counts[f"{case}: sequences"] == counts[f"{case}: bit-identical final runs"] == 1
