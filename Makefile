# Quick start: `make demo` (set up, then train LeNet-5 on MNIST and write its report) and
# `make test` (set up, then run the whole suite). Everything installs into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch pins that install from the local wheel cache on our machines;
# override with e.g. `make setup TORCH="torch torchvision"`.
TORCH ?= torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed

.PHONY: setup data cifar10 system-packages demo test lint format benchmark clean

setup: $(STAMP) system-packages data

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

data: $(STAMP) system-packages
	$(BIN)/convnet data fetch mnist
	$(BIN)/convnet data fetch fashion-mnist || echo "Note: Fashion-MNIST is not available here."

# CIFAR-10 (170 MB) from its official URL, or from a copy: make cifar10 CIFAR10=cifar-10-binary.tar.gz
cifar10: $(STAMP)
	$(BIN)/convnet data fetch cifar10 $(if $(CIFAR10),--source "$(CIFAR10)")

# Debian packages some features use: Chromium for the browser test (Playwright's own browser
# download needs the internet), g++ and ninja-build (LeNet-5's pooling kernel, compiled at
# first use), fonts-nanum (Korean glyphs for the browser test's screenshots of the Korean
# page; the Korean figures need no system font: pip installs NanumGothic with
# koreanize-matplotlib) and dataset-fashion-mnist (Fashion-MNIST's IDX files). As root with
# apt-get, install the missing ones; elsewhere, or if apt-get fails, say so and carry on:
# the browser test then skips saying why, LeNet-5 pools with PyTorch's own operator, and
# Fashion-MNIST falls back to its mirrors.
SYSTEM_PACKAGES := $(if $(wildcard /usr/bin/chromium),,chromium) \
	$(if $(wildcard /usr/bin/g++),,g++) $(if $(wildcard /usr/bin/ninja),,ninja-build) \
	$(if $(wildcard /usr/share/fonts/truetype/nanum),,fonts-nanum) \
	$(if $(wildcard /usr/share/datasets/fashion-mnist),,dataset-fashion-mnist)

system-packages:
	@if [ -z "$(strip $(SYSTEM_PACKAGES))" ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES); } \
		|| echo "Note: could not install $(strip $(SYSTEM_PACKAGES))."; \
	else echo "Note: $(strip $(SYSTEM_PACKAGES)) missing (install them for the browser test and Fashion-MNIST)."; fi

demo: setup
	$(BIN)/convnet demo

# Two pytest workers: most tests use one thread, so two keep two cores busy (pytest-xdist).
# --dist loadfile: a file's tests share one worker, so a module's fixtures are built once
# (spread test by test, both workers built them: 674 s of test time instead of 581).
test: setup
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

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
