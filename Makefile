# Two commands: `make run` and `make test`. Everything else is a helper for them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export SOFTHSM2_CONF := $(CURDIR)/.dev/softhsm2.conf

.PHONY: help setup build run test lint clean-dev

help:
	@echo "make run    provision .dev/ if needed, build, run manager (:8000) and vault (:8001/:8002)"
	@echo "make test   provision .dev/ if needed, build, run every test"
	@echo "make lint   rustfmt --check and clippy -D warnings"

setup:
	@bash softhsm-setup/setup.sh

build:
	cargo build --workspace --bins

run: setup build
	@bash softhsm-setup/run-dev.sh

test: setup build
	cargo test --workspace --all-targets --no-fail-fast

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

clean-dev:
	rm -rf .dev
