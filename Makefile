# Herald: `make run` starts everything, `make test` runs the tests. Both set themselves up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
PORT ?= 5000

.PHONY: install run test lint format bench bench-full bench-pages browser clean

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

run: install
	$(BIN)/flask --app wsgi db upgrade
	$(BIN)/python -m app.devserver --port $(PORT)

# Debian's Chromium for the browser tests (never a browser download).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium missing: run 'sudo apt-get install -y chromium'"; fi; }

test: install browser
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The benchmark suite (docs/benchmarks.md): PostgreSQL and Redis at 127.0.0.1, nginx as
# the receiver. `make bench` is the quick run (under 2 minutes); bench-full the long one.
bench: install
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

bench-full: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

# Dashboard render times at 1k/10k/100k attempts (SQLite; set DATABASE_URL for PostgreSQL).
bench-pages: install
	$(BIN)/python -m bench.pages $(BENCH_ARGS)

clean:
	rm -rf $(VENV) instance .pytest_cache .mypy_cache .ruff_cache
