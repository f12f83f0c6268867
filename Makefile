# fumidai: one entry point for setting up, running the lab and testing.
#   make demo       set up, start moto + the lab, run site.yml, leave it up
#   make demo-down  take the lab and moto down
#   make test       set up, then every check: lint, unit, integration, molecule, lab
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
PODMAN_ENV := . scripts/podman-env.sh
ROLES := bastion nat_instance apache

.PHONY: help setup demo demo-down test lint test-unit test-integration test-molecule test-lab bench

help:
	@sed -n 's/^#   //p' Makefile

setup:
	@scripts/setup.sh

demo: setup
	@$(PODMAN_ENV) && scripts/lab.sh up

demo-down: setup
	@$(PODMAN_ENV) && scripts/lab.sh down

lint: setup
	yamllint --strict .
	ruff check .
	# ansible-lint loads the inventory: give the bastion_ec2 plugin an (empty) local AWS API.
	scripts/moto_local.py run -- ansible-lint --profile production

test-unit: setup
	pytest -q tests/unit

test-integration: setup
	# Two workers, each with its own moto server; a module's tests stay on one worker.
	pytest -q -n 2 --dist loadfile --durations=15 tests/integration

test-molecule: setup
	@set -e; $(PODMAN_ENV); for role in $(ROLES); do \
	  echo "==> molecule test: roles/$$role"; \
	  (cd roles/$$role && ANSIBLE_ROLES_PATH=$(CURDIR)/roles molecule test); \
	done

test-lab: setup
	@$(PODMAN_ENV) && pytest -q --durations=15 tests/lab

test: lint test-unit test-integration test-molecule test-lab

# Benchmarks print times and ratios measured in one run (no pass/fail on time).
bench: setup
	python bench/inventory_bench.py
	@$(PODMAN_ENV) && python bench/fanout_bench.py --hosts 20 --repeat 3
