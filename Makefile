# pacsd — the commands README promises.
#   make run    install into .venv and start the server on its embedded default
#   make test   install what the tests need (dev extras, DCMTK) and run them
#   make bench  run the benchmarks under bench/

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= ./pacs-data

.PHONY: run install install-dev system-test-deps test bench bench-find clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

# DCMTK (storescu, findscu, movescu, getscu, echoscu, storescp, dcmdump) are the real peers the
# tests talk to.  Installed with apt-get when missing (CI runs as root on Debian).
system-test-deps:
	@./scripts/install-system-deps.sh test

run: install
	@./scripts/install-system-deps.sh run || echo "pacsd: without those fonts, scan sheets are not written (the archive works)" >&2
	$(BIN)/pacsd serve --storage-dir $(DATA)/storage --index-db $(DATA)/index.sqlite --log-dir $(DATA)/logs

test: install-dev system-test-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-dev
	@./scripts/install-system-deps.sh bench
	$(BIN)/python bench/ingest.py $(BENCH_ARGS)

bench-find: install-dev
	@./scripts/install-system-deps.sh bench
	$(BIN)/python bench/find.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
