# Two commands on a fresh machine:
#   make demo   generate the demo dataset and run the whole pipeline on it
#   make test   run the test suite
# Both create .venv and install requirements.txt the first time.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
DEMO   ?= data/demo
IMAGE  ?= freesound-audio-tagging-2019
GPUS   ?= all

.PHONY: venv test demo demo-data build run clean-demo

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

test: $(VENV)/.installed
	$(PY) -m pytest -q tests

demo-data: $(VENV)/.installed
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

# CUDA container: the repo is mounted at /workdir, so data/ and outputs stay on the host.
build:
	docker build -t $(IMAGE) .

run:
	docker run --gpus $(GPUS) --rm -it --ipc=host \
		-v $(CURDIR):/workdir -w /workdir $(IMAGE) bash
