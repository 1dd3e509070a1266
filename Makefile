# Two commands on a fresh machine:  `make run`  and  `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NOTEBOOKS := $(sort $(wildcard notebooks/0*.ipynb))
# papermill parameters for every notebook, e.g. make run PARAMS="-p SMOKE True"
PARAMS ?=

.PHONY: install run notebooks data report test smoke clean-results

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Execute every notebook in order, in place, on the embedded default data and model, then
# write the report from their results.
run: install notebooks report

notebooks: install
	@for nb in $(NOTEBOOKS); do \
	  echo "=== $$nb"; \
	  $(VENV)/bin/papermill --log-output --cwd notebooks $$nb $$nb $(PARAMS) || exit 1; \
	done

data: install
	$(VENV)/bin/papermill --cwd notebooks notebooks/01_data_prep.ipynb notebooks/01_data_prep.ipynb $(PARAMS)

# report/report.md and report/report.html from results/, data/stats.json and figures/.
report: install
	$(PY) -m utils.report

test: install
	$(PY) -m pytest -q tests

# Every notebook in SMOKE mode (tiny random encoder, a few hundred examples), outputs to /tmp.
smoke: install
	@mkdir -p /tmp/smoke && for nb in $(NOTEBOOKS); do \
	  echo "=== $$nb"; \
	  $(VENV)/bin/papermill --cwd notebooks $$nb /tmp/smoke/$$(basename $$nb) -p SMOKE True || exit 1; \
	done
