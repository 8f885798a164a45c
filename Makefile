# Two commands on a fresh clone: `make demo` and `make test`. Each sets up what it needs.
VENV := .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.ready

.PHONY: setup test demo bench results extension clean

setup: $(READY)

$(READY): install/setup.sh backend/pyproject.toml
	install/setup.sh
	touch $@

test: $(READY)
	$(PY) -m pytest -q tests

demo: $(READY)
	$(PY) demo/run.py

bench: $(READY)
	$(PY) -m mimic.bench generate

# docs/RESULTS.md: the ablation of the four constraints on the synthetic benchmark (about 30 min on 2 cores)
results: $(READY)
	$(PY) -m mimic.ablation --report docs/RESULTS.md

# The extension zip for Install from Disk: dist/mimic-<version>.zip
extension: $(READY)
	$(PY) install/build_extension.py

clean:
	rm -rf $(VENV) demo/out dist
