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

.PHONY: setup demo test test-fast lint check-python

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

# The whole test suite, slow cases included.
test: $(READY)
	$(PY) -m pytest tests -q -rs

# Without the cases marked slow.
test-fast: $(READY)
	$(PY) -m pytest tests -q -m "not slow"

# The linter and the formatter, as CI runs them (ruff.toml; .style.yapf: apply with
# `$(PY) -m yapf -i -r rgs_detectron tests tools`).
lint: $(READY)
	$(PY) -m ruff check .
	$(PY) -m yapf --diff --recursive rgs_detectron tests tools
