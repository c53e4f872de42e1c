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
# (synthetic identities + scikit-image's real face photos). See docs/demo-model.md; what each choice did to the
# quality figures is in docs/quality.md.
DEMO_WORK   ?= build/demo-model
DEMO_FRAMES ?= 900
DEMO_GLASSES_FRAMES ?= 300
DEMO_STEPS  ?= 10000
DEMO_SIZE   ?= 128
# Lively synthetic people: more blinks, lids that droop, more talking, a wider mouth, smiles that show the teeth
# (the movements swapstream evaluate checks the swap keeps).
DEMO_LIVELY ?= --blink-every 0.8,2.5 --talking 0.8 --mouth-max 1.3 --grin 0.8 --squint 0.5
DEMO_TRAIN_FLAGS ?= --size $(DEMO_SIZE) --batch 8 --lr 1e-3 --lr-final 0.1 --steps $(DEMO_STEPS) --threads 1 \
  --workers 1 --checkpoint-every 500 --preview-every 500 --encoder-channels 8 --bottleneck 128 --code-channels 64 \
  --decoder-channels 64 --residual-blocks 0 --eyes-mouth-weight 3 --edge-weight 1
# Second stage, from the first stage's weights: plain clips of both people beside the lively ones (their smiles keep
# the lips closed, as most webcam faces do), blinks drawn about three times as often (--balance-eyes), eyes and mouth
# weighted 10x: what made the swap blink (docs/quality.md). Its threads and workers are those of the run in models/demo.
DEMO_PLAIN_FRAMES ?= 600
DEMO_PLAIN ?= --blink-every 0.8,2.5 --squint 0.5
DEMO_TUNE_STEPS ?= 8000
DEMO_TUNE_FLAGS ?= --size $(DEMO_SIZE) --batch 8 --lr 5e-4 --lr-final 0.1 --steps $(DEMO_TUNE_STEPS) --threads 2 \
  --workers 1 --checkpoint-every 500 --preview-every 1000 --eyes-mouth-weight 10 --edge-weight 1 --balance-eyes 1
# Third stage, from the second's weights: the same data and weights, with the mean codes of A's and B's faces pulled
# together (--code-align-weight 1) so A's expressions reach decoder B where B's own faces put them: the eyes and
# a101's resting mouth follow A better (docs/quality.md).
DEMO_ALIGN_STEPS ?= 12000
# What the third, fourth and fifth stages share: eyes and mouth 10x, blinks drawn more often, the codes aligned, one
# thread (that of the runs in models/demo).
DEMO_ALIGNED_FLAGS ?= --threads 1 --workers 1 --checkpoint-every 500 --preview-every 1000 --eyes-mouth-weight 10 \
  --edge-weight 1 --balance-eyes 1 --code-align-weight 1
DEMO_ALIGN_FLAGS ?= --size $(DEMO_SIZE) --batch 8 --lr 3e-4 --lr-final 0.1 --steps $(DEMO_ALIGN_STEPS) $(DEMO_ALIGNED_FLAGS)
# Fourth stage, from the third's weights: 900 more plain frames of each person (smiles with closed lips, as the
# held-out clips smile), the same weights and code alignment at a lower learning rate. The lively clips' smiles bare
# the teeth, so the swap opened B's mouth whenever A smiled with closed lips; more closed-lip smiles shut it
# (a103's mouth correlation 0.79 -> 0.88, a101's 0.48 -> 0.60; docs/quality.md).
DEMO_MORE_PLAIN_FRAMES ?= 900
DEMO_PLAIN_STEPS ?= 12000
DEMO_PLAIN_FLAGS ?= --size $(DEMO_SIZE) --batch 8 --lr 2e-4 --lr-final 0.1 --steps $(DEMO_PLAIN_STEPS) $(DEMO_ALIGNED_FLAGS)
# Fifth stage, from the fourth's weights: the same data, weights and alignment, 12 000 more steps at 4e-4 (the
# fourth's 2e-4 moved less in the same steps): a103's mouth correlation 0.88 -> 0.91, a101's eyes 0.83 -> 0.86
# (docs/quality.md).
DEMO_MORE_STEPS ?= 12000
DEMO_MORE_FLAGS ?= --size $(DEMO_SIZE) --batch 8 --lr 4e-4 --lr-final 0.1 --steps $(DEMO_MORE_STEPS) $(DEMO_ALIGNED_FLAGS)
# Sixth stage, from the fifth's weights: the same data and alignment with the mouth weighted 40x (eyes still 10x),
# 12 000 steps at 4e-4 (run-mouth); that run shuts closed-lip smiles more often and loses a little at the eyes, so
# the stage is the mean of the fifth stage's weights and its (run-sixth, python -m training.average): a101's mouth
# correlation 0.64 -> 0.69, a103's 0.91 -> 0.92, a101's eyes 0.86 -> 0.86, a103's 0.84 -> 0.83 (docs/quality.md).
DEMO_MOUTH_STEPS ?= 12000
# the sixth stage's eye and mouth weights, kept by the seventh
DEMO_FEATURE_WEIGHTS ?= --eyes-weight 10 --mouth-weight 40
DEMO_MOUTH_FLAGS ?= --size $(DEMO_SIZE) --batch 8 --lr 4e-4 --lr-final 0.1 --steps $(DEMO_MOUTH_STEPS) \
  $(DEMO_ALIGNED_FLAGS) $(DEMO_FEATURE_WEIGHTS)
# Seventh stage, from the sixth's weights: the same data, alignment and weights with the edge (image gradient)
# loss at 6x, 3 500 steps at 2e-4 (run-edge): the eyes blink more fully, a103's eye correlation 0.83 -> 0.86,
# a101's 0.86 -> 0.86, the mouth 0.69 / 0.92 -> 0.69 / 0.91 (docs/quality.md).
DEMO_EDGE_STEPS ?= 3500
DEMO_EDGE_FLAGS ?= --size $(DEMO_SIZE) --batch 8 --lr 2e-4 --lr-final 0.1 --steps $(DEMO_EDGE_STEPS) \
  $(DEMO_ALIGNED_FLAGS) $(DEMO_FEATURE_WEIGHTS) --edge-weight 6
# The Studio's starting point (`train faces --base`): the same pair at the Studio's 64 px and recipe shape
# (stream_server/studio/config.py StudioRecipe), so a job's first minutes adapt a face model instead of growing one.
DEMO_BASE_SIZE ?= 64
DEMO_BASE_FLAGS ?= --size $(DEMO_BASE_SIZE) --batch 8 --lr 1e-3 --lr-final 0.1 --steps 4000 --max-minutes 20 \
  --threads 1 --workers 1 --checkpoint-every 500 --preview-every 500 --encoder-channels 16 --bottleneck 128 \
  --code-channels 64 --decoder-channels 64 --residual-blocks 0 --eyes-mouth-weight 3 --edge-weight 1
# `python -m` runs this checkout's code whatever the virtualenv's console script points at.
SW := $(PY) -m swapstream.cli
demo-model: $(VENV)/.installed-dev
	$(SW) synth --identity a --frames $(DEMO_FRAMES) --seed 11 $(DEMO_LIVELY) --out $(DEMO_WORK)/a.mp4
	$(SW) synth --identity a --frames $(DEMO_GLASSES_FRAMES) --seed 13 $(DEMO_LIVELY) --glasses \
	  --out $(DEMO_WORK)/a-glasses.mp4
	$(SW) synth --identity b --frames $(DEMO_FRAMES) --seed 12 $(DEMO_LIVELY) --out $(DEMO_WORK)/b.mp4
	$(PY) -m training.real_photos --out $(DEMO_WORK)/real-photos
	$(SW) extract $(DEMO_WORK)/a.mp4 $(DEMO_WORK)/a-glasses.mp4 $(DEMO_WORK)/real-photos --out $(DEMO_WORK)/faces-a \
	  --size $(DEMO_SIZE)
	$(SW) extract $(DEMO_WORK)/b.mp4 --out $(DEMO_WORK)/faces-b --size $(DEMO_SIZE)
	$(SW) train faces --a $(DEMO_WORK)/faces-a --b $(DEMO_WORK)/faces-b --out $(DEMO_WORK)/run-faces $(DEMO_TRAIN_FLAGS) \
	  $$([ -f $(DEMO_WORK)/run-faces/checkpoint.safetensors ] && echo --resume)
	$(SW) synth --identity a --frames $(DEMO_PLAIN_FRAMES) --seed 14 $(DEMO_PLAIN) --out $(DEMO_WORK)/a-plain.mp4
	$(SW) synth --identity b --frames $(DEMO_PLAIN_FRAMES) --seed 15 $(DEMO_PLAIN) --out $(DEMO_WORK)/b-plain.mp4
	$(SW) extract $(DEMO_WORK)/a.mp4 $(DEMO_WORK)/a-glasses.mp4 $(DEMO_WORK)/real-photos $(DEMO_WORK)/a-plain.mp4 \
	  --out $(DEMO_WORK)/faces-a-tune --size $(DEMO_SIZE)
	$(SW) extract $(DEMO_WORK)/b.mp4 $(DEMO_WORK)/b-plain.mp4 --out $(DEMO_WORK)/faces-b-tune --size $(DEMO_SIZE)
	$(SW) train faces --a $(DEMO_WORK)/faces-a-tune --b $(DEMO_WORK)/faces-b-tune --out $(DEMO_WORK)/run-tune \
	  --base $(DEMO_WORK)/run-faces/checkpoint.safetensors $(DEMO_TUNE_FLAGS) \
	  $$([ -f $(DEMO_WORK)/run-tune/checkpoint.safetensors ] && echo --resume)
	$(SW) train faces --a $(DEMO_WORK)/faces-a-tune --b $(DEMO_WORK)/faces-b-tune --out $(DEMO_WORK)/run-align \
	  --base $(DEMO_WORK)/run-tune/checkpoint.safetensors $(DEMO_ALIGN_FLAGS) \
	  $$([ -f $(DEMO_WORK)/run-align/checkpoint.safetensors ] && echo --resume)
	$(SW) synth --identity a --frames $(DEMO_MORE_PLAIN_FRAMES) --seed 16 $(DEMO_PLAIN) --out $(DEMO_WORK)/a-plain2.mp4
	$(SW) synth --identity b --frames $(DEMO_MORE_PLAIN_FRAMES) --seed 17 $(DEMO_PLAIN) --out $(DEMO_WORK)/b-plain2.mp4
	$(SW) extract $(DEMO_WORK)/a.mp4 $(DEMO_WORK)/a-glasses.mp4 $(DEMO_WORK)/real-photos $(DEMO_WORK)/a-plain.mp4 \
	  $(DEMO_WORK)/a-plain2.mp4 --out $(DEMO_WORK)/faces-a-plain --size $(DEMO_SIZE)
	$(SW) extract $(DEMO_WORK)/b.mp4 $(DEMO_WORK)/b-plain.mp4 $(DEMO_WORK)/b-plain2.mp4 --out $(DEMO_WORK)/faces-b-plain \
	  --size $(DEMO_SIZE)
	$(SW) train faces --a $(DEMO_WORK)/faces-a-plain --b $(DEMO_WORK)/faces-b-plain --out $(DEMO_WORK)/run-plain \
	  --base $(DEMO_WORK)/run-align/checkpoint.safetensors $(DEMO_PLAIN_FLAGS) \
	  $$([ -f $(DEMO_WORK)/run-plain/checkpoint.safetensors ] && echo --resume)
	$(SW) train faces --a $(DEMO_WORK)/faces-a-plain --b $(DEMO_WORK)/faces-b-plain --out $(DEMO_WORK)/run-more \
	  --base $(DEMO_WORK)/run-plain/checkpoint.safetensors $(DEMO_MORE_FLAGS) \
	  $$([ -f $(DEMO_WORK)/run-more/checkpoint.safetensors ] && echo --resume)
	$(SW) train faces --a $(DEMO_WORK)/faces-a-plain --b $(DEMO_WORK)/faces-b-plain --out $(DEMO_WORK)/run-mouth \
	  --base $(DEMO_WORK)/run-more/checkpoint.safetensors $(DEMO_MOUTH_FLAGS) \
	  $$([ -f $(DEMO_WORK)/run-mouth/checkpoint.safetensors ] && echo --resume)
	$(PY) -m training.average $(DEMO_WORK)/run-more $(DEMO_WORK)/run-mouth --out $(DEMO_WORK)/run-sixth
	$(SW) train faces --a $(DEMO_WORK)/faces-a-plain --b $(DEMO_WORK)/faces-b-plain --out $(DEMO_WORK)/run-edge \
	  --base $(DEMO_WORK)/run-sixth/checkpoint.safetensors $(DEMO_EDGE_FLAGS) \
	  $$([ -f $(DEMO_WORK)/run-edge/checkpoint.safetensors ] && echo --resume)
	$(SW) train digits --arch cnn --pad-variants 8 --epochs 20 --seed 0 --out $(DEMO_WORK)/run-digits
	rm -rf $(DEMO_WORK)/models && $(SW) export $(DEMO_WORK)/run-edge $(DEMO_WORK)/run-digits --out $(DEMO_WORK)/models
	$(SW) extract $(DEMO_WORK)/a.mp4 $(DEMO_WORK)/a-glasses.mp4 $(DEMO_WORK)/real-photos \
	  --out $(DEMO_WORK)/faces-a$(DEMO_BASE_SIZE) --size $(DEMO_BASE_SIZE)
	$(SW) extract $(DEMO_WORK)/b.mp4 --out $(DEMO_WORK)/faces-b$(DEMO_BASE_SIZE) --size $(DEMO_BASE_SIZE)
	$(SW) train faces --a $(DEMO_WORK)/faces-a$(DEMO_BASE_SIZE) --b $(DEMO_WORK)/faces-b$(DEMO_BASE_SIZE) \
	  --out $(DEMO_WORK)/run-base$(DEMO_BASE_SIZE) $(DEMO_BASE_FLAGS) \
	  $$([ -f $(DEMO_WORK)/run-base$(DEMO_BASE_SIZE)/checkpoint.safetensors ] && echo --resume)
	# the base file: that run's weights without optimiser state
	$(PY) -m training.base $(DEMO_WORK)/run-base$(DEMO_BASE_SIZE) --out $(DEMO_WORK)/models/base.safetensors
	rm -rf models/demo && cp -r $(DEMO_WORK)/models models/demo
	# the exported run's preview
	cp $(DEMO_WORK)/run-edge/preview*.png models/demo/ 2>/dev/null || true

bench: $(VENV)/.installed-dev
	$(PY) bench/train_speed.py
	$(PY) bench/inference.py --models models/demo
	$(PY) bench/stream_latency.py --models models/demo

clean:
	rm -rf $(VENV) build .pytest_cache test-artifacts
