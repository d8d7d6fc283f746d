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

.PHONY: install demo test lint

$(VENV)/.installed: setup.py
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
	$(PY) -m pytest -q tests

lint: install
	$(PY) -m pip install -q flake8 isort==5.13.2 yapf==0.40.2
	$(PY) -m flake8 kdplugins scripts tests
	$(PY) -m isort --check-only --diff kdplugins scripts tests
	$(PY) -m yapf --diff --recursive kdplugins scripts tests
