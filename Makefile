# clipdedup: two commands do all set-up on a fresh machine.
#   make demo   - install, build a sample dataset, run the job, print a summary
#   make test   - install, run the test suite
#   make run-dataflow PROJECT=... REGION=... BUCKET=...  - the job on Dataflow (docs/dataflow.md)

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: install demo test test-all bench bench-embed bench-int8 bench-mine bench-query bench-nightly bench-recall lint clean run-dataflow
.PHONY: report-screenshot bench-quality bench-diff bench-carry

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: install
	$(VENV)/bin/clipdedup demo --output demo-output

# One pytest worker per core (pytest-xdist); a test file stays on one worker so its
# module fixtures (a run of the job shared by its tests) are built once.
PYTEST = $(PY) -m pytest -q -n auto --dist loadfile

test: install
	$(PYTEST) -m "not slow" tests

test-all: install
	$(PYTEST) tests

bench: bench-mine bench-embed bench-int8 bench-query

bench-mine: install
	$(PY) bench/mine.py

bench-embed: install
	$(PY) bench/embed.py

bench-int8: install
	$(PY) bench/int8_gemm.py

bench-query: install
	$(PY) bench/query.py

bench-quality: install
	$(PY) bench/quality.py

# A PNG of the newest demo run's report.html (runs the demo first when there is
# none); needs Debian's chromium (apt-get install -y chromium).
REPORT_PNG ?= docs/report.png
report-screenshot: install
	@ls demo-output/runs/*/report.html >/dev/null 2>&1 || $(MAKE) demo
	$(PY) -m tools.report.browser "$$(ls -t demo-output/runs/*/report.html | head -1)" $(REPORT_PNG)

# The runs, then mining at 1M + 10k as `mode: auto` mines at that size (approximate);
# exact at 1M from scratch takes about an hour here (bench/nightly.py --help).
bench-nightly: install
	$(PY) bench/nightly.py --scratch-mode approximate

# A night's diff of two runs around a dense cluster (12.5M pairs each), and a
# night's embed job carrying 200k records with nothing new.
bench-diff: install
	$(PY) bench/diff.py

bench-carry: install
	$(PY) bench/carry.py

# The approximate search's recall check at 1M rows, with and without the
# partitions' bound.
bench-recall: install
	$(PY) bench/recall.py

# The whole job on Google Cloud Dataflow: inputs and outputs on gs://.
# Optional: INPUT, OUTPUT, MODEL (hub name or gs:// folder), IMAGE (a worker
# container from docker/), GPU=1 (T4 workers; needs the GPU IMAGE),
# DATAFLOW_FLAGS (any other Beam/Dataflow flags).
INPUT  ?= gs://$(BUCKET)/shards/*.tar
OUTPUT ?= gs://$(BUCKET)/clipdedup
MODEL  ?= clip-ViT-B-32
GPU_FLAGS = --device cuda --machine_type n1-standard-8 --number_of_worker_harness_threads 1 \
	--dataflow_service_options 'worker_accelerator=type:nvidia-tesla-t4;count:1;install-nvidia-driver'

run-dataflow: install
	@test -n "$(PROJECT)" -a -n "$(REGION)" -a -n "$(BUCKET)" || \
	  { echo "usage: make run-dataflow PROJECT=... REGION=... BUCKET=... [INPUT=gs://...] [OUTPUT=gs://...] [MODEL=...] [IMAGE=...] [GPU=1]"; exit 2; }
	$(VENV)/bin/clipdedup run --config dataflow --input '$(INPUT)' --output $(OUTPUT) \
	  --model $(MODEL) --runner DataflowRunner --project $(PROJECT) --region $(REGION) \
	  --temp_location gs://$(BUCKET)/tmp --staging_location gs://$(BUCKET)/staging \
	  --experiments use_runner_v2 \
	  $(if $(IMAGE),--sdk_container_image $(IMAGE) --sdk_location container,--setup_file ./setup.py) \
	  $(if $(GPU),$(GPU_FLAGS)) $(DATAFLOW_FLAGS)

lint: install
	$(VENV)/bin/ruff check pipelines transforms tests bench

clean:
	rm -rf demo-output bench-output build dist *.egg-info .pytest_cache
