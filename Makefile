# The two commands: `make serve` (bootstrap a venv, serve) and `make test`
# (bootstrap a venv, lint, run the suite). ARGS are passed to launch_server.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.sglang-amd-bootstrap

.PHONY: bootstrap serve test test-full lint

bootstrap: $(STAMP)

$(STAMP): pyproject.toml scripts/bootstrap.sh
	VENV=$(VENV) PYTHON=$(PYTHON) bash scripts/bootstrap.sh
	touch $(STAMP)

serve: bootstrap
	$(VENV)/bin/sglang-amd serve $(ARGS)

lint: bootstrap
	$(VENV)/bin/ruff check sglang_amd tests

test: lint
	VENV=$(VENV) bash scripts/run_tests.sh $(PYTEST_ARGS)

# Also the repetitions marked `full` (other tiers, dtypes, page sizes, models).
test-full: lint
	SGLANG_AMD_TEST_FULL=1 VENV=$(VENV) bash scripts/run_tests.sh $(PYTEST_ARGS)
