# mlpbench: `make bench` runs the main job, `make test` runs the tests.
# Both create .venv on first use (and refresh it when pyproject.toml or constraints.txt change).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PRESET ?= quick
ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help venv test test-e2e test-browser mutants mutation bench loader report profile gpu-reference check-perf check-counters check-instructions baseline noise-eval perf-save perf-compare clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	@touch $@

venv: $(STAMP)  ## create or refresh .venv with the pinned, tested versions

# the dev extra (test + mutmut) on top of the test venv, only for the targets that need it: `make test` never waits on it
DEV_STAMP := $(VENV)/.installed-dev
$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $@

test: $(STAMP)  ## run the test suite (fast; perf benchmarks and the long e2e checks are not included)
	$(BIN)/python -m pytest -q -m "not e2e and not browser"

test-e2e: $(STAMP)  ## the long end-to-end checks (a real Callgrind A/A count: minutes); CI runs them as their own step
	$(BIN)/python -m pytest -q -m e2e

test-browser: $(STAMP)  ## report.html and the history site in headless Chromium (installs Debian's chromium when missing)
	bash .ci/chromium
	$(BIN)/python -m pytest -q -m browser tests/browser

mutants: $(STAMP)  ## the mutant campaign: each deliberate bug of tests/mutants.py must fail its tests (ARGS=--cuda on a GPU)
	$(BIN)/python -m tests.mutants $(ARGS)

MODULES ?=
MUTATION_JOBS ?= 2
mutation: $(DEV_STAMP)  ## mutmut over MODULES="bench/analysis/stats.py ..." against each one's own tests ([tool.mlpbench.mutation]; docs/testing.md)
	$(BIN)/python -m tests.mutation --jobs $(MUTATION_JOBS) $(MODULES)

bench: $(STAMP)  ## the `quick` sweep on every available device (PRESET=..., ARGS=...), then `make loader`
	$(BIN)/mlpbench run --preset $(PRESET) $(ARGS) && $(BIN)/mlpbench report latest --html
	$(BIN)/mlpbench loader $(LOADER_ARGS)

LOADER_ARGS ?= --threads 1  # one torch thread for the step: two are erratic on a shared 2-core machine (docs/loader.md)
loader: $(STAMP)  ## the classic FashionMNIST loop end to end vs the step alone (LOADER_ARGS=...; docs/loader.md)
	$(BIN)/mlpbench loader $(LOADER_ARGS)

report: $(STAMP)  ## re-render report.md, plots and report.html of the latest run (RUN=dir to choose)
	$(BIN)/mlpbench report $(or $(RUN),latest) --html

profile: $(STAMP)  ## profile a representative case (FashionMNIST net, batch 64) on the default device
	$(BIN)/mlpbench profile --network fashion_mnist --batch 64 $(ARGS)

# The GPU kit runs from a plain checkout on a bare GPU machine (no venv there): PY is that machine's python.
PY ?= python3
OUT ?= results/gpu-reference
gpu-reference:  ## the GPU kit, every CUDA check and measurement in one bounded command (OUT=DIR, ARGS="--device cpu --tiny")
	PYTHONPATH=. $(PY) -m tools.gpuref --out $(OUT) $(ARGS)

GATE_BASELINE ?= results/baselines/cpu-gate.json
PERF_BASE ?= HEAD
check-perf: $(STAMP)  ## perf gate: counters vs the committed baseline, timing vs PERF_BASE (default HEAD) in one run
	$(BIN)/mlpbench check --baseline $(GATE_BASELINE) --against $(PERF_BASE) $(ARGS)

check-counters: $(STAMP)  ## the deterministic counter gate alone, against the committed baseline (CI runs this)
	$(BIN)/mlpbench check --baseline $(GATE_BASELINE) --layers counters $(ARGS)

check-instructions: $(STAMP)  ## instruction counts under Callgrind, this tree vs PERF_BASE (default HEAD) in one run; needs valgrind
	$(BIN)/mlpbench check --against $(PERF_BASE) --layers instructions $(ARGS)

baseline: $(STAMP)  ## deliberately rewrite the committed gate baseline (counters + timing samples, this machine)
	$(BIN)/mlpbench check --write-baseline $(GATE_BASELINE) $(ARGS)

CHAIN ?= 22,10
noise-eval: $(STAMP)  ## issue 41: A/A and A/B (+10%) pairs of separate quick runs, quiet and loaded, and --confirm's campaign (results/noise-eval)
	PYTHON=$(BIN)/python bash tools/experiments/noise_eval/run.sh $(CHAIN)

perf-save: $(STAMP)  ## pytest-benchmark cases, saved for later comparison
	$(BIN)/python -m pytest tests/perf --benchmark-only --benchmark-autosave -q

PERF_FAIL ?= 25
perf-compare: $(STAMP)  ## pytest-benchmark cases compared with the last saved run (fails past PERF_FAIL% median)
	@ls .benchmarks/*/*.json >/dev/null 2>&1 || { echo "perf-compare: no saved run yet; saving one first"; \
		$(MAKE) --no-print-directory perf-save; }
	$(BIN)/python -m pytest tests/perf --benchmark-only --benchmark-compare --benchmark-compare-fail=median:$(PERF_FAIL)% -q

clean:  ## remove the venv, caches and un-committed runs
	rm -rf $(VENV) results/runs results/profiles .pytest_cache .benchmarks *.egg-info mutants
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
