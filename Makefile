# assay — `make demo` and `make test` set up a fresh machine (see README.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: venv demo test test-fast lint bench sample clean

venv: $(STAMP)

# torch first, pinned: 2.13.0 is the CPU build on this machine's disk (never a multi-GB CUDA build).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: venv
	$(VENV)/bin/assay select --config configs/demo.yaml --out runs/demo
	$(VENV)/bin/assay stats runs/demo
	$(VENV)/bin/assay manifest validate runs/demo/manifest.json

test: venv
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check . || true
	rm -rf build/typecheck && mkdir -p build/typecheck/assay
	cp assay/*.py build/typecheck/assay/
	for d in pipeline scorers selectors kernels; do ln -s ../../../$$d build/typecheck/assay/$$d; done
	cd build/typecheck && $(abspath $(VENV))/bin/mypy -p assay

bench: venv
	$(PY) benchmarks/run.py

sample:
	$(PY) data/make_sample.py

clean:
	rm -rf runs build .pytest_cache .mypy_cache .ruff_cache
