# hssl: `make demo` and `make test` are the whole Quickstart.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v gfortran >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "gfortran missing: installing it with apt-get (escnn's dependency py3nj builds with it)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gfortran >/dev/null; } || { \
	      echo "error: apt-get could not install gfortran; install it by hand and rerun make"; exit 2; }; \
	  else \
	    echo "error: no Fortran compiler found; escnn's dependency py3nj needs one to build."; \
	    echo "       install it with: apt-get update && apt-get install -y gfortran   (as root)"; \
	    exit 2; \
	  fi; }
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --no-compile --upgrade pip setuptools wheel
	$(BIN)/pip install --quiet --no-compile -c constraints.txt -e '.[test,tensorboard]'
	touch $(STAMP)

demo: install
	rm -rf runs/demo
	$(BIN)/hssl pretrain --recipe recipes/demo.yaml --out runs/demo
	$(BIN)/hssl linear-probe runs/demo/checkpoint.safetensors --baseline
	$(BIN)/hssl inspect-equivariance runs/demo/checkpoint.safetensors --plot runs/demo/equivariance.png

lint: install
	$(BIN)/ruff check hssl_cli tests benchmarks
	$(BIN)/ruff format --check hssl_cli tests benchmarks

test: install lint
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) runs build *.egg-info
