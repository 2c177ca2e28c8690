# The two commands of the README:  make run   (the demo, end to end)   make test   (the suite)
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# bump the suffix when the install recipe changes, so existing virtualenvs are synced again
STAMP := $(VENV)/.installed-v2
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
# No __pycache__ in the checkout; the virtualenv's packages are byte-compiled once at install
# (uv --compile-bytecode): without it every process recompiled GX, dbt and Airflow from source
# (importing GX took 13 s instead of 6 s).
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: run test test-slow install lock lint clean airflow bench celery

# The virtualenv inside the repo, from the project's own lock file (hash-checked).
$(STAMP): requirements.lock pyproject.toml
	@echo "==> creating $(VENV) from requirements.lock (first time: a minute or two)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv==0.13.8"
	@$(BIN)/uv pip sync --quiet --python $(BIN)/python --require-hashes --compile-bytecode requirements.lock
	@$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	@$(BIN)/cxloop demo $(ARGS)

# Benchmarks: make bench PRESET=small|medium|large|xlarge (results in bench/results/).
PRESET ?= small
bench: $(STAMP)
	@$(BIN)/python -m cxloop.bench --preset $(PRESET) $(BENCH_ARGS)

# Calibration of the account NPS intervals (Wald, bayes, bootstrap): bench/results/calibration-*.md.
.PHONY: bench-stats
bench-stats: $(STAMP)
	@$(BIN)/python -m cxloop.bench_stats $(BENCH_STATS_ARGS)

# Airflow's UI on the demo home, for a newcomer to look around (Ctrl-C stops it).
airflow: $(STAMP)
	@$(BIN)/cxloop airflow

# The distributed setup on this machine, no Docker: CeleryExecutor, two Celery workers, the
# local Postgres (metadata + warehouse) and Redis (broker); asserts every DAG run succeeded with
# tasks on both workers. Logs in var/celery/logs. CELERY_ARGS="--help" lists the options.
celery: $(STAMP)
	@$(BIN)/python scripts/celery_run.py $(CELERY_ARGS)

test: $(STAMP)
	@scripts/system-deps.sh
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

# The two runs too slow for CI's budget (~4 min each): the backfill through Airflow, and
# the Celery deployment with two workers on the local Postgres and Redis.
test-slow: $(STAMP)
	@CXLOOP_SLOW_TESTS=1 $(BIN)/python -m pytest tests/e2e/test_backfill.py tests/e2e/test_celery_run.py $(PYTEST_ARGS)

# The dbt package built on Spark (dbt-spark, session method, pyspark local[2]; Java 17), every
# mart compared with the DuckDB build: tests/integration/test_dbt_package_spark.py, ~6 min.
# Its own virtualenv .venv-spark (the main lock + requirements-spark.lock, pyspark ~490 MB):
# never .venv, because Great Expectations imports pyspark when it is installed, and make run and
# make test need none of it. make test leaves the Spark test out (CXLOOP_SPARK_TESTS unset).
SPARK_VENV := .venv-spark
SPARK_STAMP := $(SPARK_VENV)/.installed-v1
$(SPARK_STAMP): $(STAMP) requirements.lock requirements-spark.lock pyproject.toml
	@echo "==> creating $(SPARK_VENV) from requirements.lock + requirements-spark.lock"
	@test -x $(SPARK_VENV)/bin/python || $(PYTHON) -m venv $(SPARK_VENV)
	@$(BIN)/uv pip sync --quiet --python $(SPARK_VENV)/bin/python --require-hashes --compile-bytecode requirements.lock requirements-spark.lock
	@$(BIN)/uv pip install --quiet --python $(SPARK_VENV)/bin/python --no-deps --no-build-isolation -e .
	@touch $(SPARK_STAMP)

.PHONY: test-spark
test-spark: $(SPARK_STAMP)
	@CXLOOP_SPARK_TESTS=1 $(SPARK_VENV)/bin/python -m pytest tests/integration/test_dbt_package_spark.py $(PYTEST_ARGS)

# ruff over the Python, sqlfluff over the dbt project's SQL (config: dbt_project/.sqlfluff)
lint: $(STAMP)
	@$(BIN)/ruff check plugins dags tests dbt_project/lint
	@$(BIN)/sqlfluff lint --disable-progress-bar dbt_project/models dbt_project/macros dbt_project/snapshots

# Re-resolve the lock after editing requirements.in (needs the registry).
lock: $(STAMP)
	@$(BIN)/uv pip compile requirements.in --python-version 3.11 --generate-hashes --no-header -o requirements.lock

clean:
	rm -rf var dbt_project/target dbt_project/logs
