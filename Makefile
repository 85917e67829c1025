# clipdedup: two commands do all set-up on a fresh machine.
#   make demo   - install, build a sample dataset, run the job, print a summary
#   make test   - install, run the test suite

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: install demo test test-all bench bench-embed bench-mine lint clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

demo: install
	$(VENV)/bin/clipdedup demo --output demo-output

test: install
	$(PY) -m pytest -q -m "not slow" tests

test-all: install
	$(PY) -m pytest -q tests

bench: bench-mine bench-embed

bench-mine: install
	$(PY) bench/mine.py

bench-embed: install
	$(PY) bench/embed.py

lint: install
	$(VENV)/bin/ruff check pipelines transforms tests bench

clean:
	rm -rf demo-output bench-output build dist *.egg-info .pytest_cache
