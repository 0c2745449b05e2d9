# The two fresh-machine commands: `make demo` and `make test` (both install first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip install --quiet --disable-pip-version-check
# The CPU build of torch; set TORCH_SPEC to another pin (or a CUDA build) where wanted.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.twinframe-installed

.PHONY: setup demo test test-slow test-full-size test-backends test-all test-unit test-parity fuzz bench lint-imports clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) "$(TORCH_SPEC)"
	$(PIP) -e ".[dev]"
	touch $@

# both frameworks train the default recipe (seed 153) twice, then repro/compare.py judges them
demo: setup
	$(PY) repro/demo.py

# Both cores: one pytest worker per core, a test file's tests kept together (they share fixtures).
PARALLEL ?= -n 2 --dist loadfile

# every model's contract and layer-wise checks (VGG-13/19: slow tier), their transfer and float64
# checks (VGG, MeDiANet-117: slow tier), a representative full pipeline of each kind, the bounded
# mapping fuzz, every framework-free unit test
test: setup
	$(PY) -m pytest $(PARALLEL)

# the rest of the matrix (CI runs it after `make test`): every zoo model's ONNX, float32
# gradient and determinism checks, the VGGs and MeDiANet-117s in full, every recipe, both fault chains; then
# the paper-size timm models and the float64 VGG-16/AlexNet trajectories, one at a time
test-slow: setup
	$(PY) -m pytest $(PARALLEL) -m "slow and not full_size"
	$(PY) -m pytest -m "full_size and not backend_rows"

# the paper-size part of test-slow alone (all processes together peak at about 15 GB)
test-full-size: setup
	$(PY) -m pytest -m "full_size and not backend_rows"

# every other zoo case on the Keras backend rows (keras-jax, keras-torch) against torch, and the Keras
# trajectories on JAX and torch; then the paper-size cases' rows, one at a time. Not in CI (hours
# on two cores; see README). A case's tests stay on one worker (their xdist_group).
test-backends: setup
	$(PY) -m pytest -n 2 --dist loadgroup -m "backend_rows and not full_size"
	$(PY) -m pytest -m "backend_rows and full_size"

test-all: test test-slow test-backends

# every layer mapping fuzzed ten times as much as in `make test` (40 configurations per Keras kind),
# and every known difference drawn until it shows, shrunk to its minimal example (reports/fuzz.json)
fuzz: setup
	$(PY) -m parity.fuzz --examples 40 --report reports/fuzz.json

test-unit: setup
	$(PY) -m pytest tests

test-parity: setup
	$(PY) -m pytest parity

# training-loop throughput: pipeline vs bare loop, deterministic vs default (reports/bench.*);
# checking your own pair: the workers' cold start, a small pair's check (reports/bench_check.*)
# seconds per epoch of each MedMNIST+ architecture in each framework (reports/bench_medmnist.*)
bench: setup
	$(PY) repro/bench.py
	$(PY) repro/bench_check.py
	$(PY) repro/bench_medmnist.py

lint-imports: setup
	$(VENV)/bin/lint-imports

clean:
	rm -rf $(VENV) reports .pytest_cache .hypothesis
