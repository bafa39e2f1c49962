# stock-lakehouse: `make demo` sets up and runs the pipeline on the bundled sample; `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: setup demo test lint dev clean

setup: $(VENV)/.installed
	@java -version >/dev/null 2>&1 || { echo "Java 17 is required (Debian: apt-get install -y openjdk-17-jre-headless)"; exit 1; }
	@$(BIN)/stock-lakehouse setup-jars

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required (soda-core needs distutils)"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

demo: setup
	$(BIN)/stock-lakehouse demo

lint: $(VENV)/.installed
	$(BIN)/ruff check stock_lakehouse stock_lakehouse_tests

test: setup lint
	$(BIN)/pytest -ra

dev: setup
	@mkdir -p $(DAGSTER_HOME) && cp -n dagster.yaml $(DAGSTER_HOME)/ 2>/dev/null || true
	$(BIN)/stock-lakehouse sync-symbols
	$(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf lake .dagster_home spark-warehouse
