# The README's two commands: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
# The test suite runs on the real services of this machine (see .ci/services.sh).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test

.PHONY: run test check check-lint check-types check-tests install services browser migrate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# AdapterHub's `adapters` library (see requirements-adapters.txt): its own venv, torch from .venv's.
ADAPTERS_VENV := .venv-adapters
SITE_PACKAGES := import sysconfig; print(sysconfig.get_paths()["purelib"])

$(ADAPTERS_VENV)/.installed: requirements-adapters.txt | $(VENV)/.installed
	$(PYTHON) -m venv $(ADAPTERS_VENV)
	$(ADAPTERS_VENV)/bin/python -m pip install --quiet -r requirements-adapters.txt
	$(BIN)/python -c '$(SITE_PACKAGES)' > "$$($(ADAPTERS_VENV)/bin/python -c '$(SITE_PACKAGES)')/hub_venv_torch.pth"
	touch $@

install: $(VENV)/.installed $(ADAPTERS_VENV)/.installed

migrate: install
	$(BIN)/python manage.py migrate --noinput

# The hub answers at once; the demo data is built beside it (the catalog says so) and the demo
# token, which replaces the last one, is printed last (demo/management/commands/run_demo.py).
run: migrate
	PORT=$(PORT) $(BIN)/python manage.py run_demo

services:
	bash .ci/services.sh

# Debian's Chromium, which the web catalog's Playwright tests drive.
browser:
	bash .ci/browser.sh

# Lint and format, the layers' import contracts, types, and the tests that need no service, the three
# side by side (mypy and pytest each keep one core busy): about 40 s with a cold mypy cache, 37 s warm.
check: install
	$(MAKE) --no-print-directory -j3 --output-sync=target check-lint check-types check-tests

check-lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

check-types:
	$(BIN)/mypy

check-tests:
	$(BIN)/python -m pytest -q -p no:cacheprovider -m "not slow" tests/test_architecture.py tests/composer tests/adaptercheck tests/storage -k "not s3"

test: install services browser
	DATABASE_URL=$(TEST_DATABASE_URL) $(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf var $(VENV) $(ADAPTERS_VENV)
