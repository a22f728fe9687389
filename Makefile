# Developer and CI entry points.
#
#   make venv            create .venv and install the project with its test extras
#   make test            venv + start a local Kafka + pytest (+ always stop Kafka)
#   make demo ARGS=...   venv + `vigil demo ARGS`
#   make lint            ruff + mypy
#   make kafka-start / kafka-stop / kafka-status   the local broker alone
#
# Variables: PYTHON (to create the venv), VENV, PYTEST_ARGS, PYTEST_WORKERS, ARGS,
# KAFKA_PORT (local broker for tests; default 19092, away from a dev broker on 9092).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.ONESHELL:

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.vigil-installed
KAFKA_PORT ?= 19092
KAFKA_CONTROLLER_PORT ?= $(shell echo $$(( $(KAFKA_PORT) + 1 )))
KAFKA := VIGIL_KAFKA_PORT=$(KAFKA_PORT) VIGIL_KAFKA_CONTROLLER_PORT=$(KAFKA_CONTROLLER_PORT) ops/kafka/local-kafka.sh
PYTEST_ARGS ?=
# Two pytest processes (xdist), one test file each at a time: the Kafka tests spend
# most of their time waiting on the broker, so this halves the wall time on 2 cores.
PYTEST_WORKERS ?= 2
ARGS ?=

.PHONY: help venv install test demo lint kafka-start kafka-stop kafka-status

help:
	@sed -n '2,/^$$/p' Makefile | sed 's/^# \{0,1\}//'

$(VPY):
	$(PYTHON) -m venv $(VENV)

# Re-install when pyproject.toml changes (editable install: code changes need nothing).
$(STAMP): pyproject.toml | $(VPY)
	$(VPY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

venv install: $(STAMP)

kafka-start:
	$(KAFKA) start
kafka-stop:
	$(KAFKA) stop
kafka-status:
	$(KAFKA) status

# Start Kafka (fail hard if it cannot), run pytest against it, always stop
# Kafka, exit with pytest's status. "No tests collected" (exit 5) is a failure.
test: $(STAMP)
	trap '$(KAFKA) stop || true' EXIT
	$(KAFKA) start
	export VIGIL_BROKER="$$($(KAFKA) bootstrap)"
	echo "VIGIL_BROKER=$$VIGIL_BROKER"
	rc=0
	$(VPY) -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS) || rc=$$?
	if [ "$$rc" -eq 5 ]; then echo "pytest collected no tests: failing" >&2; rc=1; fi
	exit "$$rc"

demo: $(STAMP)
	$(VENV)/bin/vigil demo $(ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy stream detectors
	bash -n ops/kafka/local-kafka.sh .ci/run
