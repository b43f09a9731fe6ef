# Every target installs what it needs first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RECSYS := $(VENV)/bin/recsys
STAMP := $(VENV)/.installed-dev
STAMP_COMPARE := $(VENV)/.installed-compare
STAMP_SPARK := $(VENV)/.installed-spark
export RECSYS_NO_PROGRESS ?= 1

.PHONY: install install-compare install-spark ensure-java ensure-chromium demo serve test lint bench bench-readme bench-readme-scale clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,serve]'
	touch $(STAMP)

install: $(STAMP)

$(STAMP_COMPARE): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,compare,plot,maps,serve,ui-test]'
	touch $(STAMP_COMPARE)

install-compare: $(STAMP_COMPARE)

$(STAMP_SPARK): $(STAMP_COMPARE)
	$(PY) -m pip install --quiet -e '.[dev,compare,plot,maps,serve,ui-test,spark]'
	touch $(STAMP_SPARK)

install-spark: $(STAMP_SPARK)

# `--engine spark` needs Java 17+. Root installs it (CI); anyone else is told how.
ensure-java:
	@v=$$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -1); \
	if [ -n "$$v" ] && [ "$$v" -ge 17 ]; then echo "java $$v: ok for --engine spark"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Java 17 for the Spark engine"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless; \
	else echo "Java 17 is needed for --engine spark and its tests: sudo apt-get install openjdk-17-jre-headless"; \
		echo "(or any JDK 17+ with JAVA_HOME set); the Spark tests skip until then"; fi

# The main job: real MovieLens 100K from download to recommendations (synthetic ml-100k-shaped data,
# said plainly, when the download cannot be had).
demo: install
	RECSYS=$(RECSYS) bash scripts/demo.sh

# After `make demo`: the demo's runs over HTTP on 127.0.0.1:8000 (Ctrl-C stops it); see /docs.
serve: install
	$(RECSYS) serve svd-ml-100k-random ials-ml-100k-random ials-ml-100k-user item-knn-ml-100k --default svd-ml-100k-random --ui

# The dashboard's browser tests drive Debian's chromium (Playwright with executable_path: no browser download).
# Installed with apt-get where missing when we are root; elsewhere those tests skip, saying why.
ensure-chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing chromium (apt-get) for the dashboard's browser tests"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null || \
		echo "could not install chromium: the dashboard's browser tests will skip"; \
	else echo "chromium missing and not root: the dashboard's browser tests will skip"; fi

test: install-spark ensure-java ensure-chromium
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check recsys_cli tests

# The standard suite; bench-readme puts exactly what it prints into README.md (bench markers).
bench: install-compare
	$(RECSYS) benchmark --scale ml-100k --peers surprise,implicit --format table

# The README's figures are real ml-100k: the download (network or $$RECSYS_MIRROR) must succeed first,
# so an offline machine stops here instead of putting synthetic figures in the README.
bench-readme: install-compare
	$(RECSYS) download ml-100k
	$(PY) -m recsys_cli.bench.readme --readme README.md --scale ml-100k --peers surprise,implicit

# The scale figures (about 20 minutes, ~10 GB of scratch data under data/): ml-25m-shaped fits
# against implicit per iteration/epoch, and the whole ml-32m-shaped pipeline.
SCALE_25M := --scale 25m --models als,ials,bpr --peers implicit --steps fit,evaluate --repeat 1 \
	-p als.iterations=5 -p ials.iterations=5 -p bpr.epochs=5 -p bpr.factors=64
bench-readme-scale: install-compare
	$(PY) -m recsys_cli.bench.readme --readme README.md --section scale25m --target bench-readme-scale $(SCALE_25M)
	$(PY) -m recsys_cli.bench.readme --readme README.md --section pipeline32m --target bench-readme-scale \
		--suite pipeline --scale 32m

clean:
	rm -rf $(VENV) .pytest_cache
