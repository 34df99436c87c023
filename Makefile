# mlpbench: `make bench` runs the main job, `make test` runs the tests.
# Both create .venv on first use (and refresh it when pyproject.toml or constraints.txt change).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PRESET ?= quick
ARGS   ?=

.DEFAULT_GOAL := help
.PHONY: help venv test bench clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 16

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test]'
	@touch $@

venv: $(STAMP)  ## create or refresh .venv with the pinned, tested versions

test: $(STAMP)  ## run the test suite (fast; perf benchmarks are not included)
	$(BIN)/python -m pytest -q

bench: $(STAMP)  ## run the `quick` sweep on every available device (PRESET=..., ARGS=...)
	$(BIN)/mlpbench run --preset $(PRESET) $(ARGS)

clean:  ## remove the venv, caches and un-committed runs
	rm -rf $(VENV) results/runs results/profiles .pytest_cache .benchmarks *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
