# edgeexport: set-up, demo, tests and benchmarks. Every target works on a fresh machine: it creates the venv
# (Python 3.12: onnx2tf 2.x requires it) and installs the pinned dependencies on first use.
VENV        := .venv
PY          := $(VENV)/bin/python
EDGEEXPORT  := $(VENV)/bin/edgeexport
# The first interpreter that really is 3.12: python3.12 on PATH, else a pyenv install, else the system one.
PYTHON312   := $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
                 $$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' >/dev/null 2>&1 && { echo $$p; break; }; done)
PYTEST_ARGS ?=

.PHONY: setup demo test test-all lint bench samples clean help demo-assets report-screenshot

help:
	@echo "make demo      convert the digits sample for both targets and a device, print the report"
	@echo "make test      run the test suite (fast set; 'make test-all' adds the slow architecture sweep)"
	@echo "make lint      type-check edgeexport/ (mypy --strict) and lint it with ruff"
	@echo "make bench     run the benchmarks and print their figures"
	@echo "make samples   regenerate sample_models/ (deterministic, about 15 s)"
	@echo "make demo-assets       refresh android_demo/ and ios_demo/ bundled model + manifest + sample"
	@echo "make report-screenshot regenerate docs/report.png (needs Chromium)"

$(VENV)/.installed: pyproject.toml
	@test -n "$(PYTHON312)" || { echo "error: Python 3.12 not found (onnx2tf 2.x needs >= 3.12); install python3.12"; exit 1; }
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON312)"; $(PYTHON312) -m venv $(VENV); }
	@echo "installing edgeexport and its pinned dependencies into $(VENV) (first run: a few minutes)"
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev,torch,ray]'
	@touch $@

setup: $(VENV)/.installed

demo: setup
	$(EDGEEXPORT) convert sample_models/digits_cnn.keras --out build/digits --data sample_models/digits.npz
	$(EDGEEXPORT) convert sample_models/digits_cnn.keras --device pixel-8 --preset auto \
	    --calibration sample_models/digits.npz --data sample_models/digits.npz --out build/digits-pixel-8 \
	    --bundle --preprocess scale=0.0625 --labels sample_models/digits_labels.txt
	$(EDGEEXPORT) convert sample_models/digits_cnn.onnx --out build/digits-onnx --data sample_models/digits_nchw.npz

test: setup
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check edgeexport
	$(VENV)/bin/mypy

test-all: setup
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Each script prints its figures and the command; benchmarks/RESULTS.md records them. About 40 minutes in all.
bench: setup
	$(PY) benchmarks/startup.py
	$(PY) benchmarks/conversion.py
	$(PY) benchmarks/presets.py
	$(PY) benchmarks/verify_speed.py --samples 256 --size 96
	$(PY) benchmarks/mil_executor.py --runs 5
	$(PY) benchmarks/simulator_accuracy.py
	$(PY) benchmarks/onnx_conversion.py
	$(PY) benchmarks/architectures.py

samples: setup
	$(PY) sample_models/make_samples.py

clean:
	rm -rf build .pytest_cache

demo-assets: setup
	$(PY) sample_models/make_demo_assets.py

report-screenshot: setup
	@test -x /usr/bin/chromium || command -v chromium >/dev/null 2>&1 || { echo "error: Chromium not found; install it: apt-get install -y chromium"; exit 1; }
	$(PY) docs/make_screenshot.py
