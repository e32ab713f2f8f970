# boltzgen: two commands do all set-up on a fresh machine.
#   make demo   creates .venv if needed, installs boltzgen, and runs the main job
#   make test   same set-up, then lint + format check (ruff), the test suite and the doctests
#   make docs   same set-up plus the docs extra, then the documentation site into site/ (strict)
# Without an NVIDIA GPU the small CPU build of torch is installed first.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.boltzgen-installed
DEMO_DIR ?= runs/demo
# Threads per test process: CI machines have 2 cores, and subprocess tests run beside pytest.
TEST_THREADS ?= 1

.PHONY: demo test install docs bench gpu-wheels clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
		echo "GPU found: installing the default (CUDA) torch build"; \
	else \
		echo "no GPU: installing the CPU build of torch"; \
		$(PY) -m pip install -q "torch==2.13.0" || echo "torch 2.13.0 CPU build not found: the package requirement picks a build"; \
	fi
	$(PY) -m pip install -q -e ".[test,docs]"  # docs: the browser test renders the site too
	@touch $(STAMP)

DEMO_TEMPLATE ?= alanine-dipeptide-demo
# One thread: on 2 cores this small flow gains nothing from more, and a busy machine loses a lot.
DEMO_THREADS ?= 1

demo: $(STAMP)
	$(VENV)/bin/boltzgen init $(DEMO_TEMPLATE) -o $(DEMO_DIR).toml --force
	OMP_NUM_THREADS=$(DEMO_THREADS) $(VENV)/bin/boltzgen train $(DEMO_DIR).toml -o $(DEMO_DIR)
	$(VENV)/bin/boltzgen report $(DEMO_DIR) -o $(DEMO_DIR)/report.html
	@echo "demo outputs are in $(DEMO_DIR)/ (report: $(DEMO_DIR)/report.html)"

test: $(STAMP)
	$(VENV)/bin/ruff check boltzgen tests analysis
	$(VENV)/bin/ruff format --check boltzgen tests analysis
	OMP_NUM_THREADS=$(TEST_THREADS) MKL_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest -q --durations=15 $(PYTEST_ARGS)

# --strict: a broken link, a page missing from the nav or an unresolved API reference fails.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(PY) analysis/bench_flow_step.py
	$(VENV)/bin/boltzgen bench energy
	$(VENV)/bin/boltzgen bench md

# Wheels a bare GPU machine (python 3.12, CUDA-13 torch, no network) lacks, for
# analysis/gpu_check.sh: carry wheels/ with the working tree.
GPU_WHEELS := --no-deps --only-binary=:all: --python-version 3.12 -d wheels
gpu-wheels: $(STAMP)
	$(PY) -m pip download -q $(GPU_WHEELS) --platform manylinux_2_34_x86_64 openmm==8.6.1 openmm-cuda-13==8.6.1
	$(PY) -m pip download -q $(GPU_WHEELS) --platform manylinux_2_17_x86_64 mdtraj scipy
	$(PY) -m pip download -q $(GPU_WHEELS) --platform any zuko tqdm pyparsing

clean:
	rm -rf $(VENV) runs .pytest_cache site
