PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo lint typecheck pytest bench bench-quick soak soak-quick clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check commbox_async tests benchmarks
	$(BIN)/mypy --strict commbox_async
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/commbox-async demo

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
