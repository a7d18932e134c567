# The two commands: `make run` starts the local stack, `make test` runs the static checks and the
# whole suite. Both install what they need into .venv first (and system packages where the host
# allows): `.[test]` is the API, the worker and the local stack together, and the test tools.

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin

.PHONY: run test check install system-packages bench lint-template clean

run: install
	$(BIN)/berth up

# The suite's two halves run side by side: the end-to-end tests mostly wait on processes they
# start (stacks, workers, sandboxes), the unit tests mostly compute, so together they fit two
# cores. The end-to-end half's output follows the unit half's.
test: install system-packages check
	@$(BIN)/python -m pytest tests/e2e > .e2e-output.txt 2>&1 & e2e=$$!; \
	$(BIN)/python -m pytest tests/unit; unit=$$?; \
	wait $$e2e; e2e_status=$$?; cat .e2e-output.txt; \
	echo "unit tests: exit $$unit; end-to-end tests: exit $$e2e_status"; \
	[ $$unit -eq 0 ] && [ $$e2e_status -eq 0 ]

# Static checks, before any test runs: lint, types (paths in pyproject.toml) and the import contracts (layers).
check: install
	$(BIN)/ruff check app berth_cli functions workers
	$(BIN)/mypy
	$(BIN)/lint-imports

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# node runs MCP servers published on npm.
# bubblewrap isolates sandboxes; passt (pasta) and iproute2 give networked ones a namespace of their own.
SYSTEM_PACKAGES := bubblewrap passt iproute2

system-packages:
	@{ command -v bwrap && command -v pasta && command -v ip; } >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  elif command -v sudo >/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else echo "install $(SYSTEM_PACKAGES) (apt-get install) for the sandbox isolation tests" >&2; exit 1; fi; }
	@command -v node >/dev/null || { echo "node (20+) and npm are needed for the sandbox tests" >&2; exit 1; }

bench: install
	$(BIN)/python bench/cold_start.py
	$(BIN)/python bench/restart_state.py
	$(BIN)/python bench/dispatch_latency.py --jobs 50 --throughput-jobs 20
	$(BIN)/python bench/sandbox_tool_calls.py
	$(BIN)/python bench/sandbox_start.py
	$(BIN)/python bench/sandbox_memory.py
	$(BIN)/python bench/package_start.py

lint-template: install
	$(BIN)/cfn-lint template.yaml

clean:
	rm -rf $(VENV) .pytest_cache .cache
