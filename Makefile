# Two commands do all the set-up: `make run` (the main job) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Installed without byte-compiling (pip compiles all 18,000 files, one at a time); Python
# writes the cache of what is imported, on first import. Where the environment turns that
# off (PYTHONDONTWRITEBYTECODE), every process would compile torch, ray and mlflow anew.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: setup run ui test test-fast lint format browser

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-oracle.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-compile --no-deps -r requirements-oracle.txt
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) main.py run spaces/quickstart.yaml

ui: setup
	$(PY) main.py ui

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Debian's Chromium for the browser test (skipped with a message where it cannot be installed).
browser:
	@command -v chromium >/dev/null || apt-get install -y --no-install-recommends chromium >/dev/null 2>&1 \
		|| echo "no Chromium (apt-get needs root): the MLflow UI browser test will be skipped"

# Two pytest-xdist workers, a test file's tests on one of them; tests/conftest.py keeps the
# files that start Ray, and those that read the quickstart's sweep, on one worker together.
XDIST := -n 2 --dist loadfile

test: lint browser
	$(PY) -m pytest $(XDIST)

# The quick tier while working: no test marked slow (over about 3 s), ray or e2e (pyproject.toml).
test-fast: setup
	$(PY) -m pytest $(XDIST) -m "not slow and not ray and not e2e"

format: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .
