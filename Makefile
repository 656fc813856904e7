# Two commands on a fresh machine (Python 3.11 or 3.12, pip, a C compiler):
#   make demo   - the pipeline on a synthetic market, embedded Redis and PostgreSQL
#   make test   - lint, types and every test, against real embedded servers
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint typecheck pytest bench clean services-stop browser secrets

install: $(STAMP)

$(STAMP): pyproject.toml hatch_build.py $(wildcard flows/native/*.c)
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if (3, 11) <= v < (3, 13) else "klineflow needs Python 3.11 or 3.12 (Bytewax 0.21.1 ships wheels up to 3.12); found %d.%d" % v)'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/klineflow demo

lint: $(STAMP)
	$(BIN)/ruff check flows dashboard tests bench
	$(BIN)/ruff format --check flows dashboard tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/python -m pytest

# The dashboard's end-to-end test drives Debian's chromium (never a downloaded browser).
# Elsewhere, install Chromium yourself and point KLINEFLOW_CHROMIUM at it.
# apt runs only when chromium is missing; it waits up to 5 minutes for a lock that another apt
# holds (an unattended upgrade, a second `make test`) and tries `update` and `install` 3 times.
APT_LOCK_WAIT := -o DPkg::Lock::Timeout=300
browser:
	@if [ -n "$$KLINEFLOW_CHROMIUM" ] || command -v chromium >/dev/null 2>&1; then :; \
	elif command -v apt-get >/dev/null 2>&1; then \
		echo "installing Debian's chromium for the dashboard's browser test"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		for try in 1 2 3; do \
			$$SUDO apt-get $(APT_LOCK_WAIT) update -qq \
			&& $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get $(APT_LOCK_WAIT) install -y -qq chromium >/dev/null \
			&& break; \
			[ $$try = 3 ] && { echo "apt-get could not install chromium (3 tries)"; exit 1; }; \
			echo "apt-get failed (try $$try of 3): again in 20 s"; sleep 20; \
		done; \
	else echo "the browser test needs Chromium: install it and set KLINEFLOW_CHROMIUM"; exit 1; fi

test: lint typecheck browser pytest

bench: $(STAMP)
	$(BIN)/python bench/replay_bench.py
	$(BIN)/python bench/rules_bench.py

# Random passwords for docker-compose.yml in ./secrets/ (ignored by git); existing ones are kept
secrets:
	$(PYTHON) deploy/make_secrets.py secrets

services-stop: $(STAMP)
	$(BIN)/klineflow services stop

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
