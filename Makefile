# Two entry points: `make demo` (main job, end to end) and `make test` (the suite).
# Each installs what it needs: a virtual env with the package, and Debian's Fashion-MNIST.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install data demo test lint clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

data: $(FASHION_MNIST)

$(FASHION_MNIST):
	$(SUDO) apt-get update -qq || true
	DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq dataset-fashion-mnist

demo: install data
	$(PY) scripts/demo.py

test: install data
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check csg_hub scripts tests

clean:
	rm -rf $(VENV) .pytest_cache
