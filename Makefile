# Entry points: `make demo` (main job, end to end), `make test` (the whole suite, what CI runs), `make test-fast`
# (unit tests on tiny models, no tests marked slow: ~20 s on 2 cores) and `make lint` (ruff).
# Each installs what it needs: a virtual env with the package, and Debian's Fashion-MNIST.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install data demo test test-fast lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,baselines]"
	touch $@

data: $(FASHION_MNIST)

$(FASHION_MNIST):
	$(SUDO) apt-get update -qq || true
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist

demo: install data
	$(PY) scripts/demo.py

test: install data
	$(PY) -m pytest -q

# One intra-op thread: the models are tiny, and on a shared 2-core machine OpenMP workers waiting for a core
# made this tier 3-5x slower (20 s -> 60-80 s wall); the slow tests (`-m slow`) are left to `make test`.
test-fast: install
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check csg_hub scripts tests

clean:
	rm -rf $(VENV) .pytest_cache
