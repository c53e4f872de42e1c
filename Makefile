# Two commands do all the set-up on a fresh machine that has only Python and pip:
#   make demo   installs the server (no PyTorch) and serves the bundled demo models
#   make test   installs everything (training extra, test tools, Debian chromium) and runs the tests
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check
HOST   ?= 127.0.0.1
PORT   ?= 8080
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: demo test lint demo-model bench system-programs clean help

help:
	@echo "make demo        install the server and serve models/demo on http://$(HOST):$(PORT)/"
	@echo "make test        install everything, type-check (make lint) and run the test suite"
	@echo "make demo-model  rebuild models/demo from synthetic identities (needs the train extra)"
	@echo "make bench       run the benchmarks in bench/"

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Stamps make repeated runs skip the installs until pyproject.toml changes.
$(VENV)/.installed-serve: pyproject.toml | $(PY)
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -q -e ".[train,dev]"
	touch $@ $(VENV)/.installed-serve

# Debian programs the tests drive: chromium for the browser tests (playwright never downloads a browser here) and
# haproxy to check deploy/'s load-balancer config. Tests that need a missing one skip and say why.
SYSTEM_PROGRAMS := chromium haproxy
system-programs:
	@missing=""; for program in $(SYSTEM_PROGRAMS); do command -v $$program >/dev/null 2>&1 || missing="$$missing $$program"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages for the tests:$$missing"; \
	  { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; } \
	  || echo "WARNING: could not install$$missing: the tests that need them will be skipped"; \
	fi

demo: $(VENV)/.installed-serve
	$(VENV)/bin/swapstream serve --models models/demo --host $(HOST) --port $(PORT)

# Type checks (mypy, strict on swapstream/ faces/ rtc/ export/ stream_server/; see pyproject.toml).
lint: $(VENV)/.installed-dev
	$(PY) -m mypy

test: lint $(VENV)/.installed-dev system-programs
	$(PY) -m pytest $(PYTEST_ARGS)

# Reproducible recipe for the bundled demo models, using only the project's own commands and data that ships
# (synthetic identities + scikit-image's real face photos). See docs/demo-model.md.
DEMO_WORK   ?= build/demo-model
DEMO_FRAMES ?= 900
DEMO_STEPS  ?= 6000
DEMO_TRAIN_FLAGS ?= --size 64 --batch 8 --lr 1e-3 --steps $(DEMO_STEPS) --max-minutes 30 --threads 1 --workers 1 \
  --checkpoint-every 500 --preview-every 500 --encoder-channels 16 --bottleneck 128 --code-channels 64 \
  --decoder-channels 64 --residual-blocks 0
SW := $(VENV)/bin/swapstream
demo-model: $(VENV)/.installed-dev
	$(SW) synth --identity a --frames $(DEMO_FRAMES) --seed 11 --out $(DEMO_WORK)/a.mp4
	$(SW) synth --identity b --frames $(DEMO_FRAMES) --seed 12 --out $(DEMO_WORK)/b.mp4
	$(PY) -m training.real_photos --out $(DEMO_WORK)/real-photos
	$(SW) extract $(DEMO_WORK)/a.mp4 $(DEMO_WORK)/real-photos --out $(DEMO_WORK)/faces-a --size 64
	$(SW) extract $(DEMO_WORK)/b.mp4 --out $(DEMO_WORK)/faces-b --size 64
	$(SW) train faces --a $(DEMO_WORK)/faces-a --b $(DEMO_WORK)/faces-b --out $(DEMO_WORK)/run-faces $(DEMO_TRAIN_FLAGS) \
	  $$([ -f $(DEMO_WORK)/run-faces/checkpoint.safetensors ] && echo --resume)
	$(SW) train digits --arch cnn --pad-variants 8 --epochs 20 --seed 0 --out $(DEMO_WORK)/run-digits
	rm -rf $(DEMO_WORK)/models && $(SW) export $(DEMO_WORK)/run-faces $(DEMO_WORK)/run-digits --out $(DEMO_WORK)/models
	# the Studio's starting point (train faces --base): the face run's weights without optimiser state
	$(PY) -m training.base $(DEMO_WORK)/run-faces --out $(DEMO_WORK)/models/base.safetensors
	rm -rf models/demo && cp -r $(DEMO_WORK)/models models/demo
	cp $(DEMO_WORK)/run-faces/preview*.png models/demo/ 2>/dev/null || true

bench: $(VENV)/.installed-dev
	$(PY) bench/train_speed.py
	$(PY) bench/inference.py --models models/demo
	$(PY) bench/stream_latency.py --models models/demo

clean:
	rm -rf $(VENV) build .pytest_cache test-artifacts
