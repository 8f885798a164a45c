# Two commands on a fresh clone: `make demo` and `make test`. Each sets up what it needs.
VENV := .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.ready

.PHONY: setup test test-blender-versions demo bench results extension clean

setup: $(READY)

$(READY): install/setup.sh backend/pyproject.toml
	install/setup.sh
	touch $@

test: $(READY)
	$(PY) -m pytest -q tests

# The Blender tests again on every supported Blender release (bpy from PyPI, one venv each)
BLENDER_VERSIONS := 4.2 4.3 4.4 5.0
test-blender-versions:
	set -e; for v in $(BLENDER_VERSIONS); do \
		MIMIC_VENV=$(CURDIR)/.venv-bpy-$$v MIMIC_BPY=$$v install/setup.sh; \
		.venv-bpy-$$v/bin/python -m pytest -q tests/test_blender.py tests/test_extension.py tests/test_demo.py; \
	done

demo: $(READY)
	$(PY) demo/run.py

bench: $(READY)
	$(PY) -m mimic.bench generate

# docs/RESULTS.md: the ablation of the four constraints on the synthetic benchmark, about 20 min a
# seed on 2 cores (docs/RESULTS.md holds SEEDS=0,1; a seed already run is not run again)
SEEDS ?= 0
results: $(READY)
	$(PY) -m mimic.ablation --seeds $(SEEDS) --report docs/RESULTS.md

# The extension zip for Install from Disk: dist/mimic-<version>.zip
extension: $(READY)
	$(PY) install/build_extension.py

clean:
	rm -rf $(VENV) .venv-bpy-* demo/out dist
