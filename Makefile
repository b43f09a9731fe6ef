# Every target installs what it needs first, so each works on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RECSYS := $(VENV)/bin/recsys
STAMP := $(VENV)/.installed-dev
STAMP_COMPARE := $(VENV)/.installed-compare
STAMP_SPARK := $(VENV)/.installed-spark
export RECSYS_NO_PROGRESS ?= 1

.PHONY: install install-compare install-spark ensure-java demo test lint bench bench-readme bench-readme-scale clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(STAMP_COMPARE): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,compare]'
	touch $(STAMP_COMPARE)

install-compare: $(STAMP_COMPARE)

$(STAMP_SPARK): $(STAMP_COMPARE)
	$(PY) -m pip install --quiet -e '.[dev,compare,spark]'
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

# The main job: real MovieLens 100K from download to recommendations.
demo: install
	$(RECSYS) download ml-100k
	$(RECSYS) preprocess ml-100k --format table
	$(RECSYS) train svd --dataset ml-100k --split random --force --format table
	$(RECSYS) evaluate svd-ml-100k-random --format table
	$(RECSYS) train ials --dataset ml-100k --split user --force --format table
	$(RECSYS) evaluate ials-ml-100k-user --relevance any --format table
	$(RECSYS) train item-knn --dataset ml-100k --force --format table
	$(RECSYS) recommend svd-ml-100k-random --user 1 -n 10 --format table
	$(RECSYS) recommend ials-ml-100k-user --user 1 -n 3 --format json
	$(RECSYS) recommend ials-ml-100k-user --ratings 183:5,185:5,200:5,218:5,219:5 -n 5 --format table
	$(RECSYS) similar item-knn-ml-100k --item 1 -n 5 --format table
	$(RECSYS) runs --format table

test: install-spark ensure-java
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check recsys_cli tests

# The standard suite; bench-readme puts exactly what it prints into README.md (bench markers).
bench: install-compare
	$(RECSYS) benchmark --scale ml-100k --peers surprise,implicit --format table

bench-readme: install-compare
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
