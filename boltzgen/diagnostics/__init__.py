"""Diagnostics: metrics, free energies and plots. Import the sub-modules directly:

- :mod:`boltzgen.diagnostics.metrics`: importance weights, reverse/forward ESS, NLL,
  Ramachandran KL/TV with the MD split-half floor, importance resampling.
- :mod:`boltzgen.diagnostics.free_energy`: free-energy surfaces and profiles (bootstrap errors),
  basin free-energy differences, backbone dihedrals.
- :mod:`boltzgen.diagnostics.plots`: matplotlib figures (no ``pyplot`` state) and
  :func:`~boltzgen.diagnostics.plots.save_figure`.
- :mod:`boltzgen.diagnostics.report`: figures and an HTML report of a run directory.
- :mod:`boltzgen.diagnostics.discrete`: evaluation of discrete models against discrete targets.
"""

from __future__ import annotations

__all__: list[str] = []
