# Every target installs what it needs into .venv itself (stamp files keep re-runs fast).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.stamps
PYTEST_ARGS ?=

.PHONY: install install-core install-harness install-system test test-fast demo bench clean help

help:
	@echo "make demo   - the main job end to end on self-generated data (writes demo_out/)"
	@echo "make test   - install everything and run the test suite"
	@echo "make bench  - throughput / memory benchmarks (benchmarks/)"

$(STAMP)/venv:
	$(PYTHON) -m venv $(VENV)
	# pip >= 24.1 rejects catalyst 22.4's metadata (needed by s3prl's speech_commands) and backtracks to 21.x,
	# which fails on Python >= 3.10; keep a pip that accepts it
	$(PIP) install -q "pip>=23,<24.1"
	mkdir -p $(STAMP) && touch $@

# torch/torchaudio pinned as a pair (requirements/core.txt); the package in editable mode
$(STAMP)/core: $(STAMP)/venv requirements/core.txt requirements/dev.txt setup.py
	$(PIP) install -q -r requirements/core.txt -r requirements/dev.txt
	$(PIP) install -q --no-deps -e .
	touch $@

# HEAR harness: hearvalidator and heareval without their stale pins (numpy 1.19, python < 3.9), then their
# real runtime needs; TensorFlow only because the stock commands import it at top level.
$(STAMP)/harness: $(STAMP)/core requirements/hear.txt requirements/hear-nodeps.txt requirements/hear-tf.txt requirements/s3prl.txt requirements/pretrain.txt requirements/downstream.txt requirements/sed.txt requirements/onnx.txt
	$(PIP) install -q -r requirements/hear.txt -r requirements/s3prl.txt -r requirements/pretrain.txt \
	  -r requirements/downstream.txt -r requirements/sed.txt -r requirements/onnx.txt
	$(PIP) install -q --no-deps --ignore-requires-python -r requirements/hear-nodeps.txt
	# -c: TensorFlow resolves its dependencies within the pandas/numpy pins of the SED metrics
	$(PIP) install -q -r requirements/hear-tf.txt -c requirements/sed.txt
	touch $@

# espeak-ng gives the generated speech datasets real words; everything falls back to tones without it
$(STAMP)/system: $(STAMP)/venv
	-@command -v espeak-ng >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && \
	  (apt-get install -y -q espeak-ng >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q espeak-ng >/dev/null 2>&1)) ) || \
	  echo "espeak-ng not installed: generated speech falls back to tones"
	touch $@

install-core: $(STAMP)/core
install-harness: $(STAMP)/harness
install-system: $(STAMP)/system
install: $(STAMP)/core $(STAMP)/harness $(STAMP)/system

test: install
	$(PY) -m pytest -q $(PYTEST_ARGS) tests

# the fast tests exercise every door (pre-training, s3prl, downstream), so they need the same installs as `test`
test-fast: install
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS) tests

demo: install
	$(PY) -m atst.demo --out demo_out

bench: $(STAMP)/core
	$(PY) benchmarks/embed_throughput.py

clean:
	rm -rf $(VENV) demo_out build *.egg-info
