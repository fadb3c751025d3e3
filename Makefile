# The two commands the README documents:
#   make run   - set everything up and run the main job
#   make test  - set everything up and run lint, type checks and the whole test suite
PYTHON ?= python3
PIP := $(PYTHON) -m pip
OUT ?= out

.PHONY: install run test lint typecheck unit

install:
	$(PIP) install --quiet --disable-pip-version-check -e ".[cpu,dev]"
	# xgrammar (constrained judge decoding) without its CUDA-only triton dependency (~1 GB).
	$(PIP) install --quiet --disable-pip-version-check --no-deps xgrammar==0.2.9 apache-tvm-ffi==0.1.15.post2

run: install
	wbray run configs/quickstart.yaml

lint:
	$(PYTHON) -m ruff check wbray tests bench
	$(PYTHON) -m ruff format --check wbray tests bench

typecheck:
	$(PYTHON) -m mypy

unit:
	$(PYTHON) -m pytest

test: install lint typecheck unit
