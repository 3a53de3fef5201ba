# The README's commands. Which Python runs them:
#   make test PYTHON=/path/to/python  that interpreter: an environment set up with
#                                     `bash tools/setup_env.sh --no-venv` (no .venv is made);
#   an active virtualenv or conda environment that has Detectron2: its python;
#   otherwise the checkout's .venv, made by tools/setup_env.sh on first use (what CI runs).
VENV ?= .venv
SETUP_MARK := $(VENV)/.rgs_setup_done
ACTIVE := $(or $(VIRTUAL_ENV),$(CONDA_PREFIX))
HAS_D2 = $(shell "$(1)" -c "import importlib.util as u; print(u.find_spec('detectron2') is not None)" 2>/dev/null)

ifdef PYTHON
  PY := $(PYTHON)
  READY := check-python
else ifneq ($(ACTIVE),)
  ifneq ($(abspath $(ACTIVE)),$(abspath $(VENV)))
    ifeq ($(call HAS_D2,$(ACTIVE)/bin/python),True)
      PY := $(ACTIVE)/bin/python
      READY :=
    endif
  endif
endif
PY ?= $(VENV)/bin/python
READY ?= $(SETUP_MARK)

.PHONY: setup demo test test-fast lint check-python matrix

$(SETUP_MARK): tools/setup_env.sh tools/env_plan.py tools/retag_wheel.py setup.py \
               requirements/base.txt requirements/test.txt requirements/constraints.txt
	VENV=$(VENV) bash tools/setup_env.sh

setup: $(SETUP_MARK)

# PYTHON= must name an interpreter that has Detectron2: say how to get one rather than fail in pytest.
check-python:
	@if [ "$(call HAS_D2,$(PYTHON))" != True ]; then \
	  echo "make: PYTHON=$(PYTHON) has no Detectron2; install into it with" \
	       "'PYTHON=$(PYTHON) bash tools/setup_env.sh --no-venv --with-tests', or drop PYTHON= to use $(VENV)" >&2; \
	  exit 2; fi

# Train + evaluate a Res-RGS Faster R-CNN on the built-in digits dataset (CPU or GPU).
demo: $(READY)
	$(PY) -m rgs_detectron.cli.digits_demo --output output/digits_demo

# The whole test suite, slow cases included, on JOBS processes (pytest-xdist; default: the cores,
# at most 4), then the cases marked serial on their own (several processes talking over ports).
JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 4 ? n : 4 )))
SUITE = $(PY) -m pytest tests -q -rs
# Without pytest-xdist (a user's own pytest): one process.
XDIST = $(shell "$(PY)" -c "import xdist" 2>/dev/null && echo "-n $(JOBS)")
define run_suite
	$(SUITE) $(XDIST) -m "not serial$(1)"; a=$$?; \
	$(SUITE) -m "serial$(1)"; b=$$?; [ $$b -eq 5 ] && b=0; \
	[ $$a -eq 0 ] && [ $$b -eq 0 ]
endef
test: $(READY)
	$(call run_suite,)

# Without the cases marked slow.
test-fast: $(READY)
	$(call run_suite, and not slow)

# The CI matrix on this machine (.ci/run): the lock's .venv, the oldest torch docs/INSTALL.md promises
# (Python 3.12), and Python 3.13 with the lock's torch, each set up the user's way under .matrix/.
matrix:
	bash .ci/run

# The linter and the formatter, as CI runs them (ruff.toml, imports sorted included: apply with
# `$(PY) -m ruff check --select I --fix .`; .style.yapf: apply with `$(PY) -m yapf -i -r rgs_detectron tests tools`).
lint: $(READY)
	$(PY) -m ruff check .
	$(PY) -m yapf --diff --recursive rgs_detectron tests tools
