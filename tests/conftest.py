"""Shared pytest options: ``--device`` runs the same suite on a GPU (``--device cuda``)."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="torch device for the tests (cpu or cuda)")
    parser.addoption(
        "--fuzz-long",
        action="store_true",
        help="run the property-based fuzz tests with thousands of examples each",
    )


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device given by ``--device`` (default cpu)."""
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise pytest.UsageError("--device cuda given but CUDA is not available")
    return torch.device(name)


#: Relative tolerance of a float32 computation against its float64 reference, per dtype.
RELATIVE_TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}


@pytest.fixture(params=[torch.float32, torch.float64], ids=["float32", "float64"])
def dtype(request: pytest.FixtureRequest) -> torch.dtype:
    """Both floating dtypes: a test taking ``device`` and ``dtype`` runs on the ``--device``
    in float32 and in float64."""
    return request.param


def pytest_configure(config: pytest.Config) -> None:
    """``--fuzz-long`` turns the bounded hypothesis runs of ``tests/test_fuzz.py`` into long
    ones."""
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:  # the fuzz tests skip themselves without hypothesis
        return
    common = {
        "deadline": None,
        "suppress_health_check": [HealthCheck.too_slow],
        "derandomize": True,
    }
    settings.register_profile("bounded", max_examples=100, **common)
    settings.register_profile("long", max_examples=3000, **{**common, "derandomize": False})
    settings.load_profile("long" if config.getoption("--fuzz-long") else "bounded")
