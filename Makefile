# stnlab: `make train` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU machine gets the CPU build of torch 2.13.0 (no CUDA download). GPU machines:
#   make install TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH ?= torch==2.13.0
TORCH_INDEX ?=
ARGS ?=
, := ,
STAMP := $(VENV)/.installed

.PHONY: help install train eval test test-fast study cluttered addition multidigit coloc volumetric lint format clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e ".[dev,sweep,cpu]"
	touch $(STAMP)

install: $(STAMP)  ## create .venv and install stnlab with its dev, sweep and cpu (numba) extras

train: install  ## train the default experiment (ARGS="model=cnn" etc. for Hydra overrides)
	$(BIN)/stnlab-train $(ARGS)

eval: install  ## evaluate a checkpoint: make eval ARGS="ckpt_path=outputs/train/runs/<run>"
	$(BIN)/stnlab-eval $(ARGS)

# The suite on TEST_WORKERS processes (pytest-xdist, one thread each; tests/conftest.py).
TEST_WORKERS ?= 2
XDIST = $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist worksteal)

test: install  ## run the test suite (TEST_WORKERS=1: in one process)
	$(BIN)/python -m pytest $(XDIST) $(ARGS)

test-fast: install  ## the suite without the slow tests
	$(BIN)/python -m pytest $(XDIST) -m "not slow" $(ARGS)

# $(call sweep,DIR,NAME,ARGS): one sweep on one core into DIR/NAME (its log DIR/NAME.log).
define sweep
OMP_NUM_THREADS=1 $(BIN)/stnlab-train $(3) hydra.sweep.dir=$(1)/$(2) $(ARGS) > $(1)/$(2).log 2>&1
endef

# $(call halves,DIR,A,ARGS_A,B,ARGS_B,OUT): two sweeps in parallel, one process on one core
# each, into DIR/A and DIR/B; then the report of both into OUT.
define halves
	mkdir -p $(1)
	$(call sweep,$(1),$(2),$(3)) & a=$$!; \
	$(call sweep,$(1),$(4),$(5)) & b=$$!; \
	wait $$a; ra=$$?; wait $$b; rb=$$?; \
	[ $$ra = 0 ] && [ $$rb = 0 ] || echo "a half of the sweep failed: see $(1)/*.log (the report lists its jobs)"
	$(BIN)/stnlab-report $(1) --out $(6)
endef

STUDY ?= outputs/study
study: install  ## the accuracy study of docs/results.md: 96 jobs, two halves in parallel (~65 min, 2 cores)
	$(call halves,$(STUDY),R_E,experiment=sample_study data.distortion=R$(,)E,RTS_P,experiment=sample_study data.distortion=RTS$(,)P,docs/results)

CLUTTERED ?= outputs/cluttered_study
cluttered: install  ## cluttered MNIST of docs/results.md: CNN, FCN, ST-CNN Att and Crop, ST-FCN, 3 seeds (~40 min, 2 cores)
	$(call halves,$(CLUTTERED),baselines,experiment=cluttered_study,st,experiment=cluttered_study model=st_cnn_att$(,)st_cnn_crop trainer.max_epochs=45,docs/results/cluttered)
	OMP_NUM_THREADS=1 $(BIN)/stnlab-train experiment=cluttered_study model=st_fcn_att optimizer.lr=1e-3 hydra.sweep.dir=$(CLUTTERED)/st_fcn $(ARGS) > $(CLUTTERED)/st_fcn.log 2>&1
	$(BIN)/stnlab-report $(CLUTTERED) --out docs/results/cluttered

ADDITION ?= outputs/addition_study
ADD := experiment=addition_study
SPLIT := model.num_parallel=2 model.split_channels=true
addition: install  ## MNIST addition of docs/results.md: 8 models x 3 seeds (~53 min, 2 cores)
	mkdir -p $(ADDITION)
	{ $(call sweep,$(ADDITION),plain,$(ADD) model=cnn$(,)fcn); r1=$$?; \
	  $(call sweep,$(ADDITION),split_cnn,$(ADD) model=st_cnn $(SPLIT)); r2=$$?; \
	  [ $$r1 = 0 ] && [ $$r2 = 0 ]; } & a=$$!; \
	{ $(call sweep,$(ADDITION),st,$(ADD) model=st_fcn$(,)st_cnn model.num_parallel=1$(,)2); r1=$$?; \
	  $(call sweep,$(ADDITION),split_fcn,$(ADD) model=st_fcn $(SPLIT)); r2=$$?; \
	  [ $$r1 = 0 ] && [ $$r2 = 0 ]; } & b=$$!; \
	wait $$a; ra=$$?; wait $$b; rb=$$?; \
	[ $$ra = 0 ] && [ $$rb = 0 ] || echo "a sweep failed: see $(ADDITION)/*.log (the report lists its jobs)"
	$(BIN)/stnlab-report $(ADDITION) --out docs/results/addition

MULTIDIGIT ?= outputs/multidigit_study
multidigit: install  ## multi-digit MNIST (SVHN twin) of docs/results.md: 3 models x 3 seeds (~27 min, 2 cores)
	$(call halves,$(MULTIDIGIT),cnn_single,experiment=multidigit model=seq_cnn$(,)seq_st_cnn_single,multi,experiment=multidigit model=seq_st_cnn_multi,docs/results/multidigit)
	$(BIN)/stnlab-report $(MULTIDIGIT) --metric test/seq_error --out docs/results/multidigit

COLOC ?= outputs/coloc_study
coloc: install  ## co-localisation of docs/results.md: 10 digit classes, translated and cluttered (~10 min, 2 cores)
	$(call halves,$(COLOC),translated,experiment=coloc,cluttered,experiment=coloc data.num_clutter=16,docs/results/coloc)
	$(BIN)/stnlab-report $(COLOC) --metric test/iou_0.5 --out docs/results/coloc

VOLUMETRIC ?= outputs/volumetric_study
volumetric: install  ## distorted volumes of docs/results.md: CNN3D vs ST-CNN3D, 3 seeds (~18 min, 2 cores)
	mkdir -p $(VOLUMETRIC)
	$(BIN)/stnlab-train experiment=volumetric_study hydra.sweep.dir=$(VOLUMETRIC) $(ARGS) > $(VOLUMETRIC).log 2>&1 || echo "a job failed: see $(VOLUMETRIC).log (the report lists its jobs)"
	$(BIN)/stnlab-report $(VOLUMETRIC) --out docs/results/volumetric

lint: install  ## ruff
	$(BIN)/ruff check src tests benchmarks

format: install  ## ruff format + autofix
	$(BIN)/ruff check --fix src tests benchmarks
	$(BIN)/ruff format src tests benchmarks

clean:  ## remove the venv, caches and outputs
	rm -rf $(VENV) .pytest_cache .ruff_cache outputs multirun build dist src/*.egg-info
