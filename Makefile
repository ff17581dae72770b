# The README's two commands:  `make demo`  and  `make test`.
# Both create a virtual environment in .venv (from nothing but Python 3.10+ and a C++ compiler),
# install the pinned dependencies and build the C++ extension libs._C, then run.
# `make gpu-check` (on a GPU machine): tools/gpu_check.sh, the GPU self-check (INSTALL.md).
# `make demo-docs`: the demo from scratch, all three blocks, then the README's demo section and
# docs/demo_last_run.json rewritten from its record (tests/test_demo_docs.py checks they agree).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo demo-docs test bench gpu-check clean

install: $(STAMP)

$(STAMP): requirements.txt setup.py $(wildcard csrc/* csrc/cuda/*)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0 ninja
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	MAX_JOBS=2 $(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation --use-pep517 -e .
	$(PY) -c "import libs.ops._ext as e; assert e.ext_available(), 'libs._C did not build'"
	touch $(STAMP)

demo: install
	$(PY) tools/demo.py

demo-docs: install
	$(PY) tools/demo.py --fresh --budget 900 --update-readme

test: install
	$(PY) -m pytest

bench: install
	$(PY) tools/benchmark.py all

gpu-check:
	bash tools/gpu_check.sh

clean:
	rm -rf build *.egg-info libs/_C*.so demo_output
