# The README's commands. Each one runs scripts/setup.sh first (idempotent, quick when done).
.PHONY: setup test test-fast test-compat demo up down status bench lint

VENV_BIN := .venv/bin

setup:
	@bash scripts/setup.sh

test: setup
	$(VENV_BIN)/pytest

test-fast: setup
	$(VENV_BIN)/pytest -m "not integration"

# The provider package off the lock: the wheel in clean venvs (oldest/newest Airflow and Python).
test-compat: setup
	@bash scripts/test_compat.sh

demo: setup
	$(VENV_BIN)/ferry demo

up: setup
	@$(VENV_BIN)/ferry stack up --airflow
	@echo
	@echo "Airflow UI: http://127.0.0.1:$${FERRY_AIRFLOW_PORT:-18080}  login: admin  password: $$($(VENV_BIN)/ferry stack password)"
	@echo 'Use the stack from a shell: eval "$$($(VENV_BIN)/ferry stack env)"'

down: setup
	$(VENV_BIN)/ferry stack down

status: setup
	$(VENV_BIN)/ferry stack status

bench: setup
	$(VENV_BIN)/python -m bench

lint: setup
	$(VENV_BIN)/ruff check src tests dags bench api
