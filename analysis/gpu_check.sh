#!/usr/bin/env bash
# The GPU check on a bare CUDA machine (one H100/H200, maybe lent only briefly): <= 8 minutes.
#
# Here, on a machine that reaches PyPI, put the wheels the GPU machine lacks into wheels/
# (about 61 MB; the GPU machine has python 3.12 and a CUDA-13 torch, but no OpenMM, mdtraj or
# zuko, and no network):
#
#     make gpu-wheels
#
# Then carry wheels/ with the working tree and run, from the repository root on the GPU machine:
#
#     bash analysis/gpu_check.sh [OUT_DIR]
#
# It installs the wheels (OpenMM 8.6.1 is the manylinux_2_34 build; its CUDA plugin
# openmm-cuda-13 is installed --no-deps and runs on the machine's own CUDA libraries once
# LD_LIBRARY_PATH lists every site-packages/nvidia/*/lib), runs the test suite's device cases on
# CUDA, then analysis/gpu_check.py, which prints its tables and writes OUT_DIR/gpu_check.json.
set -euo pipefail
out=${1:-${OUT:-.}}
py=${PYTHON:-python3}
mkdir -p "$out"
started=$(date +%s)

if ! "$py" -c "import openmm, mdtraj, zuko, tqdm" 2>/dev/null; then
  "$py" -m pip install -q --no-index --find-links wheels openmm mdtraj zuko tqdm
fi
"$py" -m pip install -q --no-deps --no-index --find-links wheels openmm-cuda-13 || true
site=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
libraries=$(ls -d "$site"/nvidia/*/lib 2>/dev/null | paste -sd: -)
export LD_LIBRARY_PATH="${libraries}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$py" -c "import openmm; print('OpenMM platforms:', [openmm.Platform.getPlatform(i).getName() for i in range(openmm.Platform.getNumPlatforms())])"

# the suite's device cases (tests taking the device fixture) on the GPU
timeout 180 "$py" -m pytest -q -p no:cacheprovider --device cuda \
  tests/test_trainers.py tests/test_flows.py tests/test_molecular_flow.py tests/test_energy_toy.py \
  2>&1 | tail -5 | tee "$out/gpu_tests.txt" || echo "device tests: see $out/gpu_tests.txt"

timeout 330 "$py" analysis/gpu_check.py --device cuda --json-out "$out/gpu_check.json" \
  | tee "$out/gpu_check.txt"
echo "gpu check done in $(( $(date +%s) - started )) s"
