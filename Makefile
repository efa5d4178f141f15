PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DOCS_STAMP := $(VENV)/.docs-installed
DEMO_STAMP := $(VENV)/.demo-installed

.PHONY: test docs e2e bench-live bench-live-quick demo bench bench-quick soak soak-quick fuzz bench-redis bench-redis-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e . --group dev --group bench
	touch $(STAMP)

# The demo needs the library and the command line's extra (rich) only: no test or bench tools.
$(DEMO_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[cli]'
	touch $(DEMO_STAMP)

test: $(STAMP)
	$(BIN)/ruff check commbox_async tests benchmarks examples
	$(BIN)/mypy --strict commbox_async
	$(BIN)/python -m pytest -q
	$(MAKE) --no-print-directory docs

# The docs site needs mkdocs and its plugins only: not the dev and bench groups (matplotlib,
# fastapi...). mkdocstrings reads the docstrings from the source (mkdocs.yml: paths: [.]),
# so the package itself is not installed either.
$(DOCS_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --group docs
	touch $(DOCS_STAMP)

# The docs site into site/, from docs/ and the docstrings; --strict: any warning fails it.
docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

e2e: $(STAMP)
	$(BIN)/python -m pytest -q -s tests/test_e2e_browser.py

bench-live: $(STAMP)
	$(BIN)/python benchmarks/bench_live.py

bench-live-quick: $(STAMP)
	$(BIN)/python benchmarks/bench_live.py --quick

demo: $(DEMO_STAMP)
	$(BIN)/commbox-async demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run_all

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run_all --quick

soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py

soak-quick: $(STAMP)
	$(BIN)/python benchmarks/soak.py --quick

fuzz: $(STAMP)
	$(BIN)/python -m pip install -q atheris
	$(BIN)/python benchmarks/fuzz_atheris.py --runs 1000000

bench-redis: $(STAMP)
	$(BIN)/python benchmarks/bench_redis.py

bench-redis-quick: $(STAMP)
	$(BIN)/python benchmarks/bench_redis.py --quick

clean:
	rm -rf $(VENV) site .mypy_cache .pytest_cache .ruff_cache
