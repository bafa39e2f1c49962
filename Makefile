# stock-lakehouse: `make demo` sets up and runs the pipeline on the bundled sample; `make test` runs the tests.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: setup demo check test test-compose screenshots lint dev dashboard bi-server clean

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

# Two test processes (each with its own Spark JVM): many tests wait on subprocesses, servers and the
# daemon, so two overlap well on 2 cores; a test file stays in one process (module fixtures are shared).
TEST_WORKERS ?= 2

test: setup lint
	$(BIN)/pytest -ra -n $(TEST_WORKERS) --dist loadfile --durations=25 -m 'not compose'

# The quick lane: lint and the tests that start no service (markers in pyproject.toml, set by conftest.py from
# the fixtures a test uses): no JVM, no MinIO, no PostgreSQL, no browser, no Dagster server. No jars needed.
SERVICES := spark or minio or postgres or browser or daemon or compose

check: lint
	$(BIN)/pytest -ra -n $(TEST_WORKERS) --durations=10 -m 'not ($(SERVICES))'

# The UI screenshots in docs/ (README): the browser tests write them to a temp folder unless SCREENSHOT_DIR is set.
screenshots: setup
	SCREENSHOT_DIR=docs $(BIN)/pytest -ra stock_lakehouse_tests/test_operations_e2e.py

# Opt-in, not part of `make test`: docker/docker-compose.yml run for real with podman (root, podman,
# netavark, iptables, runc, debootstrap; builds local images, minutes). See docker/compose.podman.yml.
PODMAN_COMPOSE ?= $(CURDIR)/.venv-compose/bin/podman-compose

test-compose: setup
	@[ -x "$(PODMAN_COMPOSE)" ] || { $(PYTHON) -m venv .venv-compose && .venv-compose/bin/pip install -q 'podman-compose==1.6.0'; }
	PODMAN_COMPOSE=$(PODMAN_COMPOSE) $(BIN)/pytest -ra -s -m compose stock_lakehouse_tests/test_compose_podman.py

# The UI, daemon and code server with the warm engine (a Spark Connect server on 127.0.0.1:15002) that every
# run uses; NO_ENGINE=1 for runs that start their own Spark.
dev: setup
	$(BIN)/stock-lakehouse sync-symbols   # creates $(DAGSTER_HOME) with the project's dagster.yaml if missing
	$(BIN)/stock-lakehouse dev $(if $(NO_ENGINE),--no-engine)

dashboard: $(VENV)/.installed
	$(BIN)/stock-lakehouse dashboard

# SQL for Power BI / Tableau (HiveServer2) on 127.0.0.1:10000, read-only (README: Live SQL).
bi-server: setup
	$(BIN)/stock-lakehouse bi-server

clean:
	rm -rf lake .dagster_home spark-warehouse
