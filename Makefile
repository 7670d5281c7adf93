# Two commands on a fresh machine:
#   make demo   generate the demo dataset and run the whole pipeline on it
#   make test   run the test suite
# Both create .venv and install requirements.txt the first time, with Python 3.11 (the pins need it):
#   make demo PYTHON=python3.11   picks the interpreter that makes the venv (default python3)
#   make demo TORCH=cpu           torch from PyTorch's CPU-only wheel index instead of PyPI's
#                                 build (on Linux x86-64 that one pulls the CUDA libraries, several GB)

PYTHON ?= python3
PYTHON_VERSION := 3.11
# The venv's folder. The Docker image sets FSAT_VENV=/opt/venv, so a host .venv seen through the
# mounted repo is never used in the container.
VENV   := $(or $(FSAT_VENV),.venv)
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO   ?= data/demo
# A PyTorch wheel index (cpu, cu126, ...) to take torch from; empty: requirements.txt as it is.
TORCH  ?=
TORCH_PIN := $(shell grep -E '^torch==' requirements.txt)
IMAGE  ?= freesound-audio-tagging-2019
GPUS   ?= all
# A data folder to mount in the container (at /data, as FSAT_DATA_DIR); default: the host's FSAT_DATA_DIR.
DATA   ?= $(FSAT_DATA_DIR)
# The container's command (default: a shell).
CMD    ?= bash

.PHONY: venv test demo demo-data build build-cpu run run-cpu clean-demo venv-foreign

# The stamp records the interpreter that made the venv (its installation, X.Y version, machine). A
# venv whose interpreter does not run here, or runs as another one (a host .venv seen from a
# container, a .venv copied between machines), is refused rather than used or replaced. An empty
# stamp (older Makefiles) is trusted when the venv's interpreter runs.
PY_ID := import sys, platform; print(sys.base_prefix, "%d.%d" % sys.version_info[:2], platform.machine())
ifneq ($(wildcard $(STAMP)),)
VENV_MADE_BY := $(shell cat '$(STAMP)')
VENV_RUNS_AS := $(shell '$(PY)' -c '$(PY_ID)' 2>/dev/null)
ifeq ($(VENV_RUNS_AS),)
VENV_FOREIGN := its interpreter $(PY) does not run here
else ifneq ($(VENV_MADE_BY),)
ifneq ($(VENV_MADE_BY),$(VENV_RUNS_AS))
VENV_FOREIGN := it was made by Python [$(VENV_MADE_BY)] and runs here as [$(VENV_RUNS_AS)]
endif
endif
endif

GOAL := $(or $(firstword $(MAKECMDGOALS)),venv)
VERSION_OF = $$($(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)

$(STAMP): requirements.txt $(if $(VENV_FOREIGN),venv-foreign)
	@if [ -f '$(STAMP)' ] && [ ! -w '$(STAMP)' ]; then \
	    echo "make: error: requirements.txt is newer than $(VENV), which is not writable here; in the container, rebuild the image (make build)" >&2; exit 1; \
	fi
	@if [ -e '$(PY)' ] || [ -L '$(PY)' ]; then \
	    v=$(call VERSION_OF,'$(PY)'); \
	    [ "$$v" = "$(PYTHON_VERSION)" ] || { echo "make: error: $(VENV) holds Python $${v:-that does not run}, not $(PYTHON_VERSION): remove it (rm -rf $(VENV)), then make $(GOAL) PYTHON=python$(PYTHON_VERSION)" >&2; exit 1; }; \
	else \
	    v=$(call VERSION_OF,$(PYTHON)) || { echo "make: error: cannot run '$(PYTHON)'; install Python $(PYTHON_VERSION) and pick it with: make $(GOAL) PYTHON=python$(PYTHON_VERSION)" >&2; exit 1; }; \
	    [ "$$v" = "$(PYTHON_VERSION)" ] || { echo "make: error: $(PYTHON) is Python $$v; the pinned requirements need Python $(PYTHON_VERSION): make $(GOAL) PYTHON=python$(PYTHON_VERSION)" >&2; exit 1; }; \
	    echo "$(PYTHON) -m venv $(VENV)"; $(PYTHON) -m venv '$(VENV)'; \
	fi
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH),$(PY) -m pip install --quiet $(TORCH_PIN) --index-url https://download.pytorch.org/whl/$(TORCH))
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -c '$(PY_ID)' > $@

venv-foreign:
	@echo "make: error: $(VENV) cannot be used here: $(VENV_FOREIGN). Remove it (rm -rf $(VENV)) to make a new one, or keep it and use another folder: make $(GOAL) VENV=.venv-here" >&2; exit 1

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q --durations=15 tests

demo-data: $(STAMP)
	test -f $(DEMO)/DATASET.json || $(PY) -m src.data.demo_data --out $(DEMO)

# The whole recipe on the generated demo data, end to end. Re-running it resumes:
# finished folds and predictions are kept (make clean-demo starts again).
demo: demo-data
	$(PY) make_folds.py --data-dir $(DEMO)
	$(PY) train_folds.py --experiment demo --data-dir $(DEMO) --resume --no-progress
	$(PY) predict_folds.py --experiment demo --data-dir $(DEMO)
	$(PY) train_folds.py --experiment demo_skip --data-dir $(DEMO) --resume --no-progress
	$(PY) predict_folds.py --experiment demo_skip --data-dir $(DEMO)
	$(PY) stacking_train.py --experiment stacking_demo --data-dir $(DEMO) --resume --no-progress --threads 1
	$(PY) blend.py --experiments demo demo_skip stacking_demo --data-dir $(DEMO)
	$(PY) score.py $(DEMO)/predictions/blend/submission.csv $(DEMO)/test_labels.csv

clean-demo:
	rm -rf $(DEMO)

# Docker, run on the host (README, "Docker"): `make build` + `make run` (CUDA; needs the NVIDIA driver
# and the NVIDIA Container Toolkit), or `make build-cpu` + `make run-cpu`. The repo is mounted at
# /workdir, DATA=/path at /data; the container runs as the calling user, so files stay theirs.
build:
	docker build -t $(IMAGE) .

build-cpu:
	docker build --build-arg TORCH=cpu -t $(IMAGE)-cpu .

DOCKER_RUN = docker run --rm $$([ -t 0 ] && echo -it || echo -i) --ipc=host --user $$(id -u):$$(id -g) \
	-v '$(CURDIR)':/workdir -w /workdir \
	$(if $(DATA),-v "$$(cd '$(DATA)' && pwd)":/data -e FSAT_DATA_DIR=/data)
CHECK_DATA = $(if $(DATA),@test -d '$(DATA)' || { echo "make: error: DATA=$(DATA) is not a folder" >&2; exit 1; })

run:
	$(CHECK_DATA)
	$(DOCKER_RUN) --gpus $(GPUS) $(IMAGE) $(CMD)

run-cpu:
	$(CHECK_DATA)
	$(DOCKER_RUN) $(IMAGE)-cpu $(CMD)
