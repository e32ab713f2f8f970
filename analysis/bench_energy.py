"""Energy+force throughput of OpenMM vs the torch force field (the table in docs/forcefield.md).

Runs ``boltzgen bench energy`` with the given arguments, e.g.::

    python analysis/bench_energy.py --json-out analysis/bench_energy.json
    python analysis/bench_energy.py alanine-dipeptide --batches 1024 8192 --compile
"""

from __future__ import annotations

import sys

from boltzgen.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "energy", *sys.argv[1:]]))
