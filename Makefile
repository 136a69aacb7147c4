# Priority Localities Index. `make index` and `make test` are all the set-up a fresh machine needs.
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
PIPELINE ?= pipelines/croydon.toml
SHARED   ?= ../shared

.PHONY: index example test bench lint format clean install system-deps example-data help

help:
	@echo "make index         run $(PIPELINE) (real Croydon data shipped in the repo)"
	@echo "make example       generate the fictional borough and run pipelines/example.toml"
	@echo "make test          run the test suite (installs chromium and python3-qgis if it can)"
	@echo "make bench         benchmarks S (Croydon), M (London), L (England-and-Wales scale)"
	@echo "make lint          ruff check and format check"
	@echo "make example-data  rebuild the Croydon bundle from $(SHARED)/data/raw"
	@echo "make clean         remove outputs and caches"

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

index: $(STAMP)
	$(BIN)/priority-index run $(PIPELINE)

example: $(STAMP)
	$(BIN)/python -m priority_index.examples.fictional outputs/example_data
	$(BIN)/priority-index run pipelines/example.toml

system-deps:
	@bash scripts/system-deps.sh

test: $(STAMP) system-deps
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --shared $(SHARED)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .

example-data: $(STAMP)
	$(BIN)/python -m priority_index.examples.croydon --raw $(SHARED)/data/raw --repo .

clean:
	rm -rf outputs .pytest_cache .ruff_cache build *.egg-info
