# pacsd — the commands README promises.
#   make run    install into .venv and start the server on its embedded default
#               (make run PORT=11113 HTTP_PORT=8043 DATA=/srv/pacs ARGS="--aet SITEPACS")
#   make test   install what the tests need (dev extras, DCMTK) and run them
#   make bench  run the benchmarks under bench/ (and bench-find, bench-dicomweb, bench-sheets, bench-compression)
#   make viewer fetch the OHIF viewer (npm package @ohif/app) into $(DATA)/viewer, served at /viewer
#   make test-fast  the edit-test loop: no slow, browser or PostgreSQL tests (under 2 minutes)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
DATA   ?= ./pacs-data
PORT      ?= 11112
HTTP_PORT ?= 8042
ARGS   ?=
OHIF_VERSION ?= 3.12.10

.PHONY: run install install-dev system-test-deps test bench bench-backlog bench-compression bench-forwarding bench-find bench-dicomweb bench-sheets viewer viewer-if-npm clean

# Debian's python3 has no ensurepip (so no `-m venv`) without the package python3-venv.
$(BIN)/python:
	@PYTHON=$(PYTHON) ./scripts/install-system-deps.sh venv
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

# The OHIF viewer ships built in the npm package @ohif/app (about 50 MB); pacsd serves it at
# /viewer with an app config pointing at its own /dicom-web.  `make run` fetches it when npm is here
# (and starts the server without it when the fetch fails).
viewer:
	$(PYTHON) scripts/install_viewer.py $(DATA)/viewer $(OHIF_VERSION)

viewer-if-npm:
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory viewer \
	  || echo "pacsd: fetching the viewer failed, /viewer stays off (make viewer to try again)" >&2; \
	else echo "pacsd: npm not found, /viewer stays off (make viewer once npm is installed)" >&2; fi

run: install viewer-if-npm
	@./scripts/install-system-deps.sh run || echo "pacsd: without those fonts, scan sheets are not written (the archive works)" >&2
	$(BIN)/pacsd serve --port $(PORT) --http-port $(HTTP_PORT) --storage-dir $(DATA)/storage \
	  --index-db $(DATA)/index.sqlite --log-dir $(DATA)/logs $(ARGS)

# The viewer test needs the built viewer: make test builds it (the test is skipped without it).
# TEST_WORKERS pytest-xdist processes run the tests (most of a test's time is spent waiting on
# servers, peers and subprocesses, so more workers than cores pay); TEST_WORKERS=0 runs them in
# this process.
TEST_WORKERS ?= 4
test: install-dev system-test-deps viewer
	$(BIN)/python -m pytest -n $(TEST_WORKERS) $(PYTEST_ARGS)

# The tiers are markers put on every test at collection (tests/markers.py, pyproject.toml).
.PHONY: test-fast
test-fast: install-dev
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not slow and not browser and not postgres" $(PYTEST_ARGS)

bench: install-dev
	@./scripts/install-system-deps.sh bench
	$(BIN)/python bench/ingest.py $(BENCH_ARGS)
	$(BIN)/python bench/backlog.py
	$(BIN)/python bench/compression.py

bench-compression: install-dev
	@./scripts/install-system-deps.sh bench
	$(BIN)/python bench/compression.py $(BENCH_ARGS)
	$(BIN)/python bench/forwarding.py

# Forwarding to a storescp beside ingest (64x64 and 512x512), and ingest with 100,000 queued items.
bench-forwarding: install-dev
	@./scripts/install-system-deps.sh bench
	$(BIN)/python bench/forwarding.py $(BENCH_ARGS)

bench-backlog: install-dev
	@./scripts/install-system-deps.sh bench
	$(BIN)/python bench/backlog.py $(BENCH_ARGS)

bench-find: install-dev
	@./scripts/install-system-deps.sh bench
	$(BIN)/python bench/find.py $(BENCH_ARGS)

bench-dicomweb: install-dev
	$(BIN)/python bench/dicomweb.py $(BENCH_ARGS)

# Scan sheets per second on one core; pdftotext/pdfimages/pdftoppm (poppler-utils) check each sheet.
bench-sheets: install-dev
	@./scripts/install-system-deps.sh bench-sheets
	$(BIN)/python bench/scansheets.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
