"""The GPU check script's non-GPU parts, on the CPU (``--quick``: tiny sizes, seconds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_quick_on_the_cpu_reports_every_section(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "analysis/gpu_check.py"),
            "--quick",
            "--device",
            "cpu",
            "--json-out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["quick"] and report["environment"]["openmm_platforms"][0] == "CPU"
    assert [row["result"] for row in report["sync_free"]] == ["skipped (not a CUDA device)"] * 3
    backends = {(row["backend"], row["device"]) for row in report["energy"]}
    assert {("openmm", "cpu"), ("openmm-bridge", "cpu"), ("torch", "cpu")} <= backends
    assert all(row["evaluations_per_second"] > 0 for row in report["energy"] + report["md"])
    assert {row["model"] for row in report["flow_step"]} >= {"ours"}
    assert all(row["ms_per_step"] > 0 for row in report["flow_step"])
    tabg = report["tabg"]
    assert tabg["sample_temperature"] == 300.0 and 0 < tabg["ess"] <= 1
    # 4 pretraining steps x 32 samples + one rung's buffer of 256 flow samples
    assert tabg["energy_evaluations"] == 4 * 32 + 256
    assert "== tabg" in done.stdout  # the printed tables


def test_gpu_check_shell_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "analysis/gpu_check.sh")]).returncode == 0
