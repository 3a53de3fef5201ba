# The README's commands. `make demo` and `make test` run the set-up first when needed.
VENV ?= .venv
PY := $(VENV)/bin/python
SETUP_MARK := $(VENV)/.rgs_setup_done

.PHONY: setup demo test test-fast

$(SETUP_MARK): tools/setup_env.sh requirements/base.txt requirements/test.txt requirements/constraints.txt setup.py
	VENV=$(VENV) bash tools/setup_env.sh

setup: $(SETUP_MARK)

# Train + evaluate a Res-RGS Faster R-CNN on the built-in digits dataset (CPU or GPU).
demo: $(SETUP_MARK)
	$(PY) -m rgs_detectron.cli.digits_demo --output output/digits_demo

# The whole test suite, slow cases included.
test: $(SETUP_MARK)
	$(PY) -m pytest tests -q -rs

# Without the cases marked slow.
test-fast: $(SETUP_MARK)
	$(PY) -m pytest tests -q -m "not slow"
