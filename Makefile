PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.demo-installed

.PHONY: test demo bench bench-quick soak soak-quick fuzz bench-redis bench-redis-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
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
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
