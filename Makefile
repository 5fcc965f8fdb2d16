# stnlab: `make train` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU machine gets the CPU build of torch 2.13.0 (no CUDA download). GPU machines:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
ARGS ?=
STAMP := $(VENV)/.installed

.PHONY: help install train eval test test-fast study lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev,sweep]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install stnlab with its dev and sweep extras

train: install  ## train the default experiment (ARGS="model=cnn" etc. for Hydra overrides)
	$(BIN)/stnlab-train $(ARGS)

eval: install  ## evaluate a checkpoint: make eval ARGS="ckpt_path=outputs/train/runs/<run>"
	$(BIN)/stnlab-eval $(ARGS)

test: install  ## run the test suite
	$(BIN)/python -m pytest $(ARGS)

test-fast: install  ## the suite without the slow tests
	$(BIN)/python -m pytest -m "not slow" $(ARGS)

STUDY ?= outputs/study
study: install  ## the accuracy study of docs/results.md: 96 jobs, two halves in parallel (~65 min, 2 cores)
	mkdir -p $(STUDY)
	OMP_NUM_THREADS=1 $(BIN)/stnlab-train experiment=sample_study data.distortion=R,E \
	  hydra.sweep.dir=$(STUDY)/R_E $(ARGS) > $(STUDY)/R_E.log 2>&1 & a=$$!; \
	OMP_NUM_THREADS=1 $(BIN)/stnlab-train experiment=sample_study data.distortion=RTS,P \
	  hydra.sweep.dir=$(STUDY)/RTS_P $(ARGS) > $(STUDY)/RTS_P.log 2>&1 & b=$$!; \
	wait $$a; ra=$$?; wait $$b; rb=$$?; \
	[ $$ra = 0 ] && [ $$rb = 0 ] || echo "a half of the study failed: see $(STUDY)/*.log (the report lists its jobs)"
	$(BIN)/stnlab-report $(STUDY) --out docs/results

lint: install  ## ruff
	$(BIN)/ruff check src tests benchmarks

format: install  ## ruff format + autofix
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:  ## remove the venv, caches and outputs
	rm -rf $(VENV) .pytest_cache .ruff_cache outputs multirun build dist src/*.egg-info
