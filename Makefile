# `make demo` and `make test` work on a fresh machine without a GPU: they create .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARCH := $(shell uname -m)
# PyPI's default builds of torch and torchvision that work together (a CUDA build on x86_64 that also runs on CPU).
ifeq ($(ARCH),aarch64)
TORCH := torch==2.9.1 torchvision==0.24.1
else
TORCH := torch==2.14.1 torchvision==0.29.1
endif

.PHONY: install demo test lint test-oldest
# The oldest torch / torchvision pair pyproject.toml allows (built against NumPy 1, so NumPy and OpenCV below 2 / 4.11)
OLDEST := torch==2.3.1 torchvision==0.18.1 'numpy<2' 'opencv-python<4.11'
OLDEST_VENV := .venv-oldest

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(TORCH)
	$(PY) -m pip install --no-build-isolation basicsr==1.4.2
	$(PY) -m pip install -e '.[test,export]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) scripts/demo.py

test: install
	$(PY) -m pytest -q -n 2 --dist loadfile tests

lint: install
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m flake8 kdplugins scripts tests
	$(PY) -m isort --check-only --diff kdplugins scripts tests
	$(PY) -m yapf --diff --recursive kdplugins scripts tests

# import-and-train smoke test on the oldest supported pair (docs/packaging.md): training, exact resume, the shims
$(OLDEST_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install --upgrade pip
	$(OLDEST_VENV)/bin/python -m pip install $(OLDEST)
	$(OLDEST_VENV)/bin/python -m pip install --no-build-isolation basicsr==1.4.2 $(OLDEST)
	$(OLDEST_VENV)/bin/python -m pip install -e '.[test]' $(OLDEST)
	touch $@

test-oldest: $(OLDEST_VENV)/.installed
	$(OLDEST_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_packaging.py tests/test_training_cli.py \
		tests/test_speed.py tests/test_efficiency.py
