# make demo  - set up and run the main job end to end in a temporary folder
# make test  - set up, then ruff, mypy and pytest
# make bench - set up, then the benchmarks (ratios against a baseline from the same run)
# make bench-loops - the uvloop/asyncio A/B behind the default loop (long)
# make bench-hub - set up, then only P8 (a health-check round of 2,000 polling workers)
# make screenshots - set up, then the web page's main views saved under docs/screenshots/
# make wheel - the project's wheel in dist/
# make deb   - dist/tentacle_<version>_<arch>.deb (dpkg-deb; packaging/deb/build.sh)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup system-deps test lint typecheck pytest demo bench bench-hub bench-loops screenshots \
	wheel deb clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python 3.11+ is needed")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

test: lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check agent tests bench
	$(BIN)/ruff format --check agent tests bench

typecheck: $(STAMP)
	$(BIN)/mypy agent

# the hub's tests start a throwaway PostgreSQL: its server binaries, installed if missing
system-deps:
	@bash .ci/system-deps

# four workers on two cores: most tests wait on processes and sockets, not on a core
# (2026-12-03, the whole suite: 11 min 6 s with 4, 14 min 47 s with 3)
PYTEST_ARGS ?= -n 4
pytest: $(STAMP) system-deps
	$(BIN)/pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash demo/demo.sh

bench: $(STAMP)
	$(BIN)/python bench/run.py

# the event loop A/B (docs/decisions.md): P1-P3 alternating, then P5b on each loop (~25 min)
bench-loops: $(STAMP)
	$(BIN)/python bench/loop_ab.py 3
	BENCH_LOOPS="uvloop asyncio" $(BIN)/python bench/bench_polling.py
bench-hub: $(STAMP)
	$(BIN)/python bench/bench_hub.py

# a hub with two real agents and a task, shown in Debian's headless chromium (1280x800, and a phone)
screenshots: $(STAMP) system-deps
	$(BIN)/python -m tests.browser.screenshots

VERSION := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' agent/__init__.py)
WHEEL := dist/tentacle-$(VERSION)-py3-none-any.whl

wheel: $(STAMP)
	rm -f $(WHEEL)
	$(BIN)/python -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir dist .

# the application in /opt/tentacle with its own virtual environment of Debian's python3
deb: wheel
	bash packaging/deb/build.sh $(WHEEL) dist

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
