# Two commands on a fresh machine:  `make run`  and  `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: help install run study decisions data bench report test test-browser demo demo-screenshots smoke gpu

# A bare `make` only prints this list (it installs nothing).
help:
	@echo "make run      install (.venv), then the main job: notebooks 01-06 and the report, ~1 h on 2 CPU cores"
	@echo "make test     install the test tools, check the layers of utils, run the tests (~15 min)"
	@echo "make study    the extended studies (notebooks 07-12) on the models of make run, ~2.5 h (estimated: notebook 12 not timed yet)"
	@echo "make decisions  recompute the defaults chosen on validation outside run/study (results/exploratory), ~1 h"
	@echo "make demo     present the live demo (notebook 06 in Voila) at http://127.0.0.1:8866/"
	@echo "make test-browser  the demo in headless Chromium (installs Debian's chromium if missing)"
	@echo "make smoke    both pipelines in SMOKE mode (tiny model) under /tmp/smoke, ~13 min"
	@echo "make report   rebuild report/ and the README's result blocks from results/"
	@echo "make bench    the benchmark alone (notebook 05's code)"
	@echo "make data     notebook 01 alone: the tweet splits under data/"
	@echo "make gpu      the training notebooks (01-04) on a GPU via PyTorch or JAX -> results/gpu.json"
	@echo "make install  the pinned requirements into .venv and the package utils, editable"
	@echo "Options: RESTART=1 (start over), PROFILE=gpu, REDO=07_comparison, REPEAT=1 (the recorded latency table on any machine), BACKEND=torch|jax (see README)"

install: $(VENV)/.installed

# The pinned runtime requirements, then the project itself, editable (pyproject.toml), so every
# notebook, script and test imports the package `utils` wherever it runs.
$(VENV)/.installed: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# What only the tests need (requirements-dev.txt).
$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# The main job, in order, on the embedded default data and model (notebooks 01-06: data,
# dense baseline, block pruning, thresholding, benchmark, demo), then the report. Every step's
# wall time and peak memory go to results/pipeline.json; an interrupted run resumes at the step
# it was cut in (RESTART=1 starts over).
# PROFILE=gpu: a cloud GPU VM's budgets, mixed precision and XLA (README, "On a GPU").
# REDO=07_comparison (comma-separated): run only those steps of the last record (again), then the
# report; the rest of the record is kept, so a long study runs in parts.
# REPEAT=1: the recorded latency table even from another machine (repeat the committed run).
PIPELINE_ARGS = $(if $(RESTART),--restart) $(if $(PROFILE),--profile $(PROFILE)) $(if $(REDO),--redo $(REDO)) $(if $(REPEAT),--repeat)

run: install
	$(PY) -m utils.face.pipeline run $(PIPELINE_ARGS)

# The extended studies (notebooks 07-12: comparison with other methods, binarization, the
# lambda1 x K study, unit vs per-matrix groups, the recovery budget, replicates over seeds) on the models of
# `make run`, then the report again.
study: install
	$(PY) -m utils.face.pipeline study $(PIPELINE_ARGS)

data: install
	$(VENV)/bin/papermill --cwd notebooks notebooks/01_data_prep.ipynb notebooks/01_data_prep.ipynb

# The defaults chosen on validation by runs of their own, on the models of `make run`, each
# written to results/exploratory/ and read at run time: block pruning's unit-selection rule
# (notebook 03's SELECTION_RUNS), fisher_mask's options (notebook 07's FISHER_RUNS) and CoFi's
# regulariser learning rate (notebook 07's COFI_REG_RUNS). A change here changes what the next
# `make run` / `make study` does. About 1 h on the committed record's machine.
decisions: install
	$(PY) scripts/explore_fisher_selection.py
	$(PY) scripts/explore_fisher_tuning.py
	$(PY) scripts/explore_cofi_reg_lr.py

# The benchmark alone (notebook 05 runs the same code): dense vs the pruned snapshot chosen on
# validation -> results/benchmark.*, derived models under checkpoints/bench.
bench: install
	$(PY) -m utils.face.bench

# report/report.md and report/report.html from results/, data/stats.json and figures/.
report: install
	$(PY) -m utils.face.report

# The layers of `utils` first (import-linter: no cycle, no import from a higher layer), then
# the tests on both cores.
test: $(VENV)/.installed-dev
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q -n 2 --dist loadfile --durations=15 --ignore=tests/browser tests

# The live demo for a presenter: notebook 06 in Voila (code hidden, widgets live), bound to
# this machine only; Ctrl+C stops it. Add ARGS=--no-browser on a machine without a screen.
demo: install
	$(PY) -m utils.face.demo --present $(ARGS)

# The demo driven in a real browser (tests/browser): Voila serving a fresh copy of the
# repository's files, headless Chromium from Debian's packages (never a downloaded browser).
CHROMIUM ?= /usr/bin/chromium
test-browser: $(VENV)/.installed-dev
	@test -x $(CHROMIUM) || { echo "installing Debian's chromium (apt-get)"; \
	  apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }
	CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q tests/browser

# The README's screenshots of the demo on a fresh clone (figures/06_demo_fresh_clone.png).
demo-screenshots: $(VENV)/.installed-dev
	DEMO_SCREENSHOT_DIR=figures CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q tests/browser

# Both pipelines in SMOKE mode (tiny random encoder, a few hundred examples) under /tmp/smoke.
smoke: install
	$(PY) -m utils.face.pipeline run --smoke --root /tmp/smoke --restart
	$(PY) -m utils.face.pipeline study --smoke --root /tmp/smoke --restart

# The training notebooks (01-04) on a GPU machine that has PyTorch or JAX with CUDA but no
# TensorFlow, through Keras' BACKEND (torch or jax), in the GPU profile (mixed precision where
# the GPU supports it), under checkpoints/gpu; then results/gpu.json. Installs nothing: the
# machine's Python must hold requirements-gpu.txt (README, "On a GPU"). SMOKE=1: the tiny run.
BACKEND ?= torch
gpu:
	KERAS_BACKEND=$(BACKEND) $(PYTHON) -m utils.face.gpu $(if $(SMOKE),--smoke) $(if $(RESTART),--restart)
