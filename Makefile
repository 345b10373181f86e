# Quick start: `make demo` (set up, then train LeNet-5 on MNIST and write its report) and
# `make test` (set up, then run the whole suite). Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch pins that install from the local wheel cache on our machines (DESIGN.md §6);
# override with e.g. `make setup TORCH="torch torchvision"`.
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: setup data demo test lint format benchmark clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/convnet data fetch mnist

demo: setup
	$(BIN)/convnet demo

test: setup
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

benchmark: setup
	$(BIN)/python benchmarks/lenet_accuracy.py

clean:
	rm -rf runs .pytest_cache
