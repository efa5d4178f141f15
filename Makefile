PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test e2e bench-live bench-live-quick demo bench bench-quick soak soak-quick fuzz bench-redis bench-redis-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check commbox_async tests benchmarks examples
	$(BIN)/mypy --strict commbox_async
	$(BIN)/python -m pytest -q

e2e: $(STAMP)
	$(BIN)/python -m pytest -q -s tests/test_e2e_browser.py

bench-live: $(STAMP)
	$(BIN)/python benchmarks/bench_live.py

bench-live-quick: $(STAMP)
	$(BIN)/python benchmarks/bench_live.py --quick

demo: $(STAMP)
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
