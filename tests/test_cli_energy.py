"""``boltzgen energy check`` and ``boltzgen bench energy``: JSON keys, verdicts and exit codes.

The check's numbers are compared with the OpenMM Reference platform inside the command; here
the float64 errors must be below the documented tolerances (1e-6 energy, 1e-5 force), an
impossible tolerance must give exit code 1, and an unsupported force (a CustomExternalForce) exit
code 2
with the force named in a one-line error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from boltzgen.cli.main import main

FORCES = {
    "HarmonicBondForce",
    "HarmonicAngleForce",
    "PeriodicTorsionForce",
    "NonbondedForce",
    "CustomGBForce",
}
KEYS = {"max_rel_energy_error", "max_rel_force_error", "terms", "n_configurations", "passed"}


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_energy_check_json_passes_for_alanine_dipeptide(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = _run(
        ["energy", "check", "alanine-dipeptide", "--md-frames", "2", "--json"], capsys
    )
    result = json.loads(out)
    assert code == 0
    assert KEYS <= set(result)
    assert result["passed"] is True and result["n_configurations"] == 6
    assert set(result["terms"]) == FORCES
    for errors in result["terms"].values():
        assert set(errors) == {"max_rel_energy_error", "max_rel_force_error"}
        assert errors["max_rel_energy_error"] <= 1e-6 and errors["max_rel_force_error"] <= 1e-5
    assert result["max_rel_energy_error"] == max(
        e["max_rel_energy_error"] for e in result["terms"].values()
    )


def test_energy_check_exits_1_when_a_tolerance_is_exceeded(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [
        "energy",
        "check",
        "alanine-dipeptide-vacuum",
        "--md-frames",
        "1",
        "--dtype",
        "float32",
        "--force-tolerance",
        "1e-12",
    ]
    code, out, _ = _run([*argv, "--json"], capsys)
    result = json.loads(out)
    assert code == 1 and result["passed"] is False and result["dtype"] == "float32"
    assert result["max_rel_force_error"] > 1e-12
    code, out, _ = _run(argv, capsys)
    assert code == 1 and "FAILED" in out and "NonbondedForce" in out


def test_energy_check_names_an_unsupported_force_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    extra = (
        tmp_path / "restraint.xml"
    )  # a force-field file whose script adds a CustomExternalForce
    extra.write_text(
        "<ForceField><Script>import "
        "openmm\nsys.addForce(openmm.CustomExternalForce('0'))\n</Script></ForceField>\n"
    )
    argv = [
        "energy",
        "check",
        "alanine-dipeptide",
        "--forcefield",
        "amber96.xml",
        str(extra),
        "--json",
    ]
    code, out, err = _run(argv, capsys)
    assert code == 2 and out == ""
    assert "CustomExternalForce" in err and err.count("\n") == 1


def test_bench_energy_reports_every_backend(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    target = tmp_path / "bench.json"
    argv = [
        "bench",
        "energy",
        "alanine-dipeptide-vacuum",
        "--batches",
        "16",
        "--workers",
        "1",
        "--seconds",
        "0.05",
    ]
    code, out, _ = _run([*argv, "--json", "--json-out", str(target)], capsys)
    assert code == 0
    result = json.loads(out)
    assert json.loads(target.read_text()) == result
    rows = result["measurements"]
    assert {(r["backend"], r["dtype"], r["batch"]) for r in rows} >= {
        ("openmm", "float64", 1),
        ("openmm-bridge", "float64", 256),
        ("torch", "float32", 16),
        ("torch", "float64", 16),
        ("torch-autograd", "float32", 16),
        ("torch-autograd", "float64", 16),
    }
    assert all(r["evaluations_per_second"] > 0 for r in rows)


def test_bench_md_compares_batched_md_with_openmm_langevin(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["bench", "md", "alanine-dipeptide-vacuum", "--replicas", "2", "8", "--seconds", "0.05"]
    code, out, _ = _run([*argv, "--json"], capsys)
    assert code == 0
    rows = json.loads(out)["measurements"]
    assert [(r["backend"], r["device"], r["batch"]) for r in rows if r["device"] == "cpu"] == [
        ("openmm-langevin", "cpu", 1),
        ("torch", "cpu", 2),
        ("torch", "cpu", 8),
    ]
    assert all(r["evaluations_per_second"] > 0 for r in rows)
    code, out, _ = _run(argv, capsys)
    header, openmm_row = out.splitlines()[:2]
    assert (
        "replica-steps/s" in header and openmm_row.split()[-2] == "1.0"
    )  # the speed-up column's reference
    code, _, err = _run([*argv[:3], "--replicas", "0"], capsys)
    assert code == 2 and "--replicas" in err
