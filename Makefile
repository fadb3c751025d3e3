# The two commands the README documents:
#   make run   - set everything up and run the main job
#   make test  - set everything up and run lint, type checks and the whole test suite
PYTHON ?= python3
PIP := $(PYTHON) -m pip
OUT ?= out

.PHONY: install run test lint typecheck unit browser

install:
	$(PIP) install --quiet --disable-pip-version-check -e ".[cpu,dev]"
	# xgrammar (constrained judge decoding) without its CUDA-only triton dependency (~1 GB).
	$(PIP) install --quiet --disable-pip-version-check --no-deps xgrammar==0.2.9 apache-tvm-ffi==0.1.15.post2

run: install
	wbray run configs/quickstart.yaml

# Debian's Chromium for the browse page's browser tests (they skip, saying why, without it).
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-noto-cjk) \
		|| echo "chromium not installed: browser tests will be skipped"; }

lint:
	$(PYTHON) -m ruff check wbray tests bench jobs cluster
	$(PYTHON) -m ruff format --check wbray tests bench jobs cluster

typecheck:
	$(PYTHON) -m mypy

unit:
	$(PYTHON) -m pytest --durations=40

test: install browser lint typecheck unit
