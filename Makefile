# The README's two commands:  `make demo`  and  `make test`.
# Both create a virtual environment in .venv (from nothing but Python 3.9+), install the pinned
# dependencies and build the C++ extension libs._C, then run.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test bench clean

install: $(STAMP)

$(STAMP): requirements.txt setup.py $(wildcard csrc/*)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	MAX_JOBS=2 $(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation -e .
	$(PY) -c "import libs.ops._ext as e; assert e.ext_available(), 'libs._C did not build'"
	touch $(STAMP)

demo: install
	$(PY) tools/demo.py

test: install
	$(PY) -m pytest

bench: install
	$(PY) tools/benchmark.py all

clean:
	rm -rf build *.egg-info libs/_C*.so demo_output
