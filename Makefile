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

.PHONY: demo test demo-model bench browser clean help

help:
	@echo "make demo        install the server and serve models/demo on http://$(HOST):$(PORT)/"
	@echo "make test        install everything and run the test suite"
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

# The browser test drives Debian's chromium; playwright never downloads a browser here.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian chromium for the browser tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null \
	  || echo "WARNING: could not install chromium: the browser tests will be skipped"; }

demo: $(VENV)/.installed-serve
	$(VENV)/bin/swapstream serve --models models/demo --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev browser
	$(PY) -m pytest $(PYTEST_ARGS)

# Reproducible recipe for the bundled demo models (see docs/demo-model.md).
demo-model: $(VENV)/.installed-dev
	$(PY) -m training.demo_recipe --out models/demo --work build/demo-model

bench: $(VENV)/.installed-dev
	$(PY) bench/train_speed.py
	$(PY) bench/inference.py --models models/demo
	$(PY) bench/stream_latency.py --models models/demo

clean:
	rm -rf $(VENV) build .pytest_cache test-artifacts
