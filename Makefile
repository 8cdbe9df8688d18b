# Two commands for a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is pinned here: on these machines 2.13.0 resolves to a local CPU build;
# an unpinned torch would pull a multi-GB CUDA build. On a GPU box, install the
# CUDA build of the same version and the code uses CUDA automatically.
TORCH ?= torch==2.13.0

.PHONY: install demo test lint clean

# constraints.txt pins every package (the versions the suite passed with; the cluster nodes
# install from the same file).
$(BIN)/.installed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt "$(TORCH)"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev,cluster]"
	# real CT for the tests (LiTS case 117): the wheel's data only; --no-deps keeps its old
	# pinned requirements (torch 1.7, lightning, mlflow) out, and none of its code is run
	$(BIN)/pip install -q --no-deps liver-ct-segmentation-package==1.6.0
	touch $@

install: $(BIN)/.installed

# The demo run is disposable: a second `make demo` starts it afresh (a real study keeps
# its run directory; `python -m study.launch --name NAME --resume` continues it).
demo: install
	rm -rf runs/demo
	$(BIN)/python -m study.launch --space hybrid --budget demo --name demo

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check study tests benchmarks

clean:
	rm -rf $(VENV) runs .cache
