# The README's commands. Each target creates the virtual environment when it is missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned to the CPU wheel that lies on this kind of machine; installing it first keeps
# pip from pulling a multi-GB CUDA build for the bare `torch` requirement.
TORCH  ?= torch==2.13.0

.PHONY: install demo test clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

# --resume: a second `make demo` continues an interrupted run or prints the finished one's table.
demo: install
	$(BIN)/l2l-data info --dataset synthref
	$(BIN)/l2l-run --resume

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build *.egg-info
