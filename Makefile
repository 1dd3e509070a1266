# Two commands on a fresh machine:  `make run`  and  `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
NOTEBOOKS := $(sort $(wildcard notebooks/0*.ipynb))
# papermill parameters for every notebook, e.g. make run PARAMS="-p SMOKE True"
PARAMS ?=
DEMO_NOTEBOOK := notebooks/06_demo.ipynb
BENCH_ARGS ?= --dense checkpoints/baseline/best --pruned checkpoints/pruned/sparsity_30 --out-dir results --rounds 2

.PHONY: install run notebooks data bench report test smoke clean-results

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# Execute every notebook in order, in place, on the embedded default data and model, then
# write the report from their results.
run: install notebooks report

# The demo (06) loads the models the benchmark derives from the pruned checkpoint: bench first.
notebooks: install
	@for nb in $(NOTEBOOKS); do \
	  echo "=== $$nb"; \
	  if [ "$$nb" = "$(DEMO_NOTEBOOK)" ]; then $(MAKE) --no-print-directory bench || exit 1; fi; \
	  $(VENV)/bin/papermill --log-output --cwd notebooks $$nb $$nb $(PARAMS) || exit 1; \
	done

data: install
	$(VENV)/bin/papermill --cwd notebooks notebooks/01_data_prep.ipynb notebooks/01_data_prep.ipynb $(PARAMS)

# Dense vs pruned (30% encoder sparsity): sizes, memory, latency, accuracy -> results/benchmark.*
# and the derived models under checkpoints/bench (compact, +vocab, int8, TFLite).
bench: install
	$(PY) -m utils.bench $(BENCH_ARGS)

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
