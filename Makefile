# Two commands on a fresh clone: `make demo` and `make test`. Each sets up what it needs.
VENV := .venv
PY := $(VENV)/bin/python
READY := $(VENV)/.ready

.PHONY: setup gui-setup check test lint test-blender-versions demo demo-character bench bench-lines bench-character results extension clean

setup: $(READY)

$(READY): install/setup.sh backend/pyproject.toml backend/torch.json
	install/setup.sh
	touch $@

# Every edit: the tests that run in under a minute on 2 cores (no render, training, setup, `mimic` or Blender
# subprocesses, full-size networks: the `slow` marker says why each is left out).
check: $(READY)
	$(PY) -m pytest -q -m "not slow and not gui"

# The windowed Blender of tests/gui (../shared/tools/gui-blender --setup, numpy in its chroot); as
# root only: elsewhere it says why and the gui tests skip saying the same.
gui-setup:
	tests/gui/setup.sh

# The whole suite, as CI runs it.
test: $(READY) gui-setup
	$(PY) -m pytest -q

lint: $(READY)
	$(VENV)/bin/ruff check .

# The Blender tests again on the other supported releases (bpy from PyPI, one venv each). PyPI's
# bpy 4.2 is built without audio: it cannot make a sound strip (it reads them from a .blend, and the
# add-on has the backend decode their sound), so the tests cannot build their shots: extension tests only.
BLENDER_VERSIONS := 4.3 4.4 5.0
test-blender-versions:
	set -e; for v in 4.2 $(BLENDER_VERSIONS); do MIMIC_VENV=$(CURDIR)/.venv-bpy-$$v MIMIC_BPY=$$v install/setup.sh; done
	.venv-bpy-4.2/bin/python -m pytest -q tests/test_extension.py
	set -e; for v in $(BLENDER_VERSIONS); do \
		.venv-bpy-$$v/bin/python -m pytest -q tests/test_blender.py tests/test_extension.py tests/test_demo.py; \
	done

demo: $(READY)
	$(PY) demo/run.py

# The demo model's motion on a character of another topology, both modes (docs/images/character.png)
demo-character: $(READY)
	$(PY) -m demo.character

bench: $(READY)
	$(PY) -m benchmarks.generate

# mimic lines on 100 dialogue lines (BENCHMARKS.md), about 5 minutes on 2 cores
bench-lines: $(READY)
	$(PY) -m benchmarks.lines

# Characters: dense transfer accuracy, fitting a 50,000-vertex character, 10 min onto 52 shape keys
bench-character: $(READY)
	$(PY) -m benchmarks.character

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
