# Two commands: `make run` and `make test`. Everything else is a helper for them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export SOFTHSM2_CONF := $(CURDIR)/.dev/softhsm2.conf

.PHONY: help setup build run test lint bench fuzz clean-dev

help:
	@echo "make run    provision .dev/ if needed, build, run manager (:8000) and vault (:8001/:8002)"
	@echo "make test   provision .dev/ if needed, build, run every test"
	@echo "make lint   rustfmt --check and clippy -D warnings"
	@echo "make bench  token sign rates (ECDSA P-256, RSA-2048; in process and through p11-kit) and store/read"
	@echo "            rates (SQLite; PostgreSQL with 1 and 2 replicas), next to openssl speed, same run;"
	@echo "            a legitimate client's latency calm and under attack"
	@echo "make fuzz   every fuzz target for FUZZ_SECONDS (default 20) each from the seed corpus"
	@echo "            (nightly; installs cargo-fuzz if missing); fails on any crash"

setup:
	@bash softhsm-setup/setup.sh

build:
	cargo build --workspace --bins

run: setup build
	@bash softhsm-setup/run-dev.sh

# Unit, SoftHSM and end-to-end tests, then doc examples; the last line sums every
# `test result:` line so the run ends with one total.
test: setup build
	@mkdir -p target
	@set -o pipefail; { cargo test --workspace --all-targets --no-fail-fast && cargo test --workspace --doc; } 2>&1 \
	  | tee target/test-output.log; status=$$?; \
	  awk '/^test result:/ {p += $$4; f += $$6} END {printf "tests: %d passed, %d failed\n", p, f}' target/test-output.log; \
	  exit $$status

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

# Ratios, not absolute numbers: the machines are shared and noisy.
bench: setup build
	@echo "== token operations: openssl speed, then SoftHSM2 in process, then through p11-kit server =="
	@bash softhsm-setup/bench-tokens.sh $(BENCH_TOKEN_SECONDS)
	@echo "== openssl speed rsa2048, 1 process (RSA private ops/s) =="
	@openssl speed -seconds 5 rsa2048 2>/dev/null | awk '/^rsa 2048/ {print "openssl sign/s: " $$6}'
	@echo "== loadgen: real services, SoftHSM2 in process; SQLite, then PostgreSQL with 1 and 2 vault replicas =="
	@target/debug/loadgen --postgres-replicas 1,2 $(BENCH_ARGS)
	@echo "== a legitimate client's latency, calm and under attack (idle connections, handshake loops, refusal flood) =="
	@target/debug/loadgen --attack --seconds 8

# The parsers of untrusted input under libFuzzer (fuzz/run.sh says how the corpus is used).
FUZZ_SECONDS ?= 20
fuzz:
	@cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh

clean-dev:
	rm -rf .dev
