# Two commands: `make run` and `make test`. Everything else is a helper for them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export SOFTHSM2_CONF := $(CURDIR)/.dev/softhsm2.conf
export KRYOPTIC_CONF := $(CURDIR)/.dev/kryoptic/kryoptic.conf

.PHONY: help setup build release run test lint bench profile fuzz clean-dev

help:
	@echo "make run    provision .dev/ if needed, build, run manager (:8000) and vault (:8001/:8002)"
	@echo "make test   provision .dev/ if needed, build (debug and release), run every test (the containers"
	@echo "            test builds the images of deploy/containers/ with podman, installing it if missing)"
	@echo "make lint   rustfmt --check, clippy -D warnings, actionlint (.github/workflows/) and the systemd units"
	@echo "make bench  release binaries: store/read req/s and p50/p99 (wrk; in process and isolation mode;"
	@echo "            SQLite, PostgreSQL with 1 and 2 replicas; busy disk) next to openssl speed, the token's"
	@echo "            sign rate and fdatasync/s, same run; JSON in target/bench/; BENCH_SECONDS per row (5);"
	@echo "            a legitimate client's latency calm and under attack"
	@echo "make profile  perf of release vault and manager under wrk: CPU ms per store and per read by"
	@echo "            category (token, TLS, HTTP, JSON, JOSE, SQLite, ...); FLAMEGRAPH=1 adds SVGs"
	@echo "make fuzz   every fuzz target for FUZZ_SECONDS (default 20) each from the seed corpus"
	@echo "            (nightly; installs cargo-fuzz if missing); fails on any crash"

setup:
	@bash softhsm-setup/setup.sh

build:
	cargo build --workspace --bins

run: setup build
	@bash softhsm-setup/run-dev.sh

# Unit, SoftHSM and end-to-end tests, then doc examples; the last line sums every
# `test result:` line so the run ends with one total. The release binaries go into the
# container images the containers:: test builds.
test: setup build release
	@mkdir -p target
	@set -o pipefail; { cargo test --workspace --all-targets --no-fail-fast && cargo test --workspace --doc; } 2>&1 \
	  | tee target/test-output.log; status=$$?; \
	  awk '/^test result:/ {p += $$4; f += $$6} END {printf "tests: %d passed, %d failed\n", p, f}' target/test-output.log; \
	  exit $$status

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	bash .ci/actionlint/run.sh
	bash deploy/systemd/lint.sh

# The binaries users deploy; `make bench` measures these.
release:
	cargo build --release --workspace --bins

# Ratios, not absolute numbers: the machines are shared and noisy. loadgen measures the release
# binaries next to openssl speed and the token's own rates in the same run, prints a table and
# writes target/bench/bench-<UTC>.json (and latest.json); compare two runs with
# `target/release/loadgen --compare OLD.json NEW.json`. BENCH_SECONDS per row (default 5).
BENCH_SECONDS ?= 5
bench: setup release
	@bash softhsm-setup/install-wrk.sh
	@echo "== loadgen: L, T, T_iso, T_kryoptic, fdatasync; store/read with wrk, in process and isolation mode, SQLite and PostgreSQL (1 and 2 vault replicas); store/read on Kryoptic =="
	@status=0; target/release/loadgen --seconds $(BENCH_SECONDS) $(BENCH_ARGS) || status=$$?; \
	  echo "== a legitimate client's latency, calm and under attack (idle connections, handshake loops, refusal flood) =="; \
	  target/release/loadgen --attack --seconds 8 || status=$$?; \
	  exit $$status

# Where a request's CPU goes (softhsm-setup/profile.sh): target/profile/ keeps the reports.
profile: setup release
	@bash softhsm-setup/profile.sh $(PROFILE_SECONDS)

# The parsers of untrusted input under libFuzzer (fuzz/run.sh says how the corpus is used).
FUZZ_SECONDS ?= 20
fuzz:
	@cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh

clean-dev:
	rm -rf .dev
