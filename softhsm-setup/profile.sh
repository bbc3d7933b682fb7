#!/usr/bin/env bash
# Where a store's and a read's CPU goes: starts release vault and manager (SoftHSM in
# process, SQLite, a private copy of the dev tokens, ports 18000-18002), drives each
# endpoint with wrk while `perf record` samples both services, and prints each process's
# CPU per request by category (token, TLS, HTTP, JSON, JOSE, SQLite, audit hashing, logging,
# runtime, allocator, kernel) — self time, so the categories add up to the whole.
# Usage: profile.sh [seconds per phase, default 10] [connections, default 32]
# BIN (default target/release) names the binaries; OUT (default target/profile) keeps
# perf.data and the per-symbol reports. FLAMEGRAPH=1 also records call stacks (DWARF
# unwinding: release builds keep no frame pointers; heavier, so at a lower rate) and draws
# $OUT/<phase>-<service>.svg with inferno (`cargo install inferno` when missing).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}"
OUT="${OUT:-$ROOT/target/profile}"
SECONDS_EACH="${1:-10}"
CONNECTIONS="${2:-32}"
command -v perf >/dev/null || { echo "profile.sh: perf is missing (apt-get install linux-perf)" >&2; exit 1; }
bash "$ROOT/softhsm-setup/install-wrk.sh"
mkdir -p "$OUT"
RUN="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT

# A private copy of the dev tokens: a `make run` elsewhere keeps its own.
cp -a "$ROOT/.dev/tokens" "$RUN/tokens"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n' \
  "$RUN/tokens" >"$RUN/softhsm2.conf"
export SOFTHSM2_CONF="$RUN/softhsm2.conf"
CA="$ROOT/.dev/tls/ca.pem"
wait_ready() { # url
  for _ in $(seq 1 150); do
    curl -sf --cacert "$CA" "$1" >/dev/null && return 0
    sleep 0.2
  done
  echo "profile.sh: $1 did not become ready" >&2
  exit 1
}

RUST_LOG=warn "$BIN/vault" --config "$ROOT/.dev/vault.toml" --database-url "sqlite://$RUN/vault.db" \
  --listen-public 127.0.0.1:18001 --listen-internal 127.0.0.1:18002 \
  --manager-jwks https://127.0.0.1:18000/.well-known/jwks.json >"$RUN/vault.log" 2>&1 &
vault_pid=$!
pids+=("$vault_pid")
wait_ready https://127.0.0.1:18001/healthz
RUST_LOG=warn "$BIN/manager" --config "$ROOT/.dev/manager.toml" --listen 127.0.0.1:18000 \
  --vault-url https://127.0.0.1:18002 >"$RUN/manager.log" 2>&1 &
manager_pid=$!
pids+=("$manager_pid")
wait_ready https://127.0.0.1:18000/readyz
wait_ready https://127.0.0.1:18001/readyz

# 256 secrets without a read limit for the read phase: pairs of key id and token for read.lua.
{
  echo "keys = {"
  for _ in $(seq 1 256); do
    curl -sf --cacert "$CA" -H 'content-type: application/json' \
      -d '{"user_id":"profile","key_data":"a profiled secret"}' https://127.0.0.1:18000/api/keys |
      python3 -c 'import json,sys; r=json.load(sys.stdin); print("{%s, %s}," % (json.dumps(r["key_id"]), json.dumps(r["access_token"])))'
  done
  echo "}"
  cat "$ROOT/tests/src/bin/loadgen/read.lua"
} >"$RUN/read.lua"
cp "$ROOT/tests/src/bin/loadgen/store.lua" "$RUN/store.lua"

# Self time by category, in CPU milliseconds per request: perf samples at F Hz, so a
# sample is 1000/F ms of one CPU. Rules are matched in order against "dso symbol".
F=499
categorise() { # perf.data, pid, requests -> "ms/request  percent  category" lines
  perf report -i "$1" --pid "$2" --no-children -n --sort dso,sym --stdio --percent-limit 0 2>/dev/null |
    awk -v f="$F" -v requests="$3" '
      /^#/ || NF < 4 { next }
      {
        n = $2; line = tolower($0)
        if (line ~ /softhsm|libcrypto|p11-kit|libp11/) c = "token (SoftHSM, its OpenSSL, p11-kit)"
        else if (line ~ /rustls|aws_lc|aws-lc|ring::|bn_|ecp_nistz|sha256_block|gcm_|aes_hw|chacha/) c = "TLS (rustls, aws-lc)"
        else if (line ~ /hyper|h2::|axum|tower|http::|httparse|reqwest/) c = "HTTP (hyper, axum, reqwest)"
        else if (line ~ /serde_json|serde::/) c = "JSON (serde_json)"
        else if (line ~ /jsonwebtoken|contract::|rsa::|num_bigint|base64/) c = "JOSE (JWT, JWE, RSA public ops)"
        else if (line ~ /sqlite|sqlx/) c = "storage (SQLite, sqlx)"
        else if (line ~ /sha2::/) c = "audit hashing (sha2)"
        else if (line ~ /tracing/) c = "logging (tracing)"
        else if (line ~ /tokio|crossbeam|parking_lot|futures|flume/) c = "runtime (tokio, channels)"
        else if (line ~ /malloc|free|realloc|calloc|memcpy|memmove|memset|_int_|cfree/) c = "allocator, memcpy (libc)"
        else if (line ~ /kernel|libc.so.6 +\[\.\] (syscall|__gi___libc_|__libc_|fdatasync|fsync|pthread_cond|__lll|__futex)/) c = "kernel (network, fsync, futex, scheduling)"
        else c = "other"
        sum[c] += n; total += n
      }
      END {
        for (c in sum) printf "%7.3f ms %5.1f %%  %s\n", sum[c] * 1000 / f / requests, 100 * sum[c] / total, c
        printf "%7.3f ms %5.1f %%  %s\n", total * 1000 / f / requests, 100, "= all (CPU per request)"
      }' | sort -rn
}

phase() { # name, wrk arguments...
  local name="$1"; shift
  echo "== $name: wrk -c$CONNECTIONS -d${SECONDS_EACH}s, perf on vault ($vault_pid) and manager ($manager_pid) =="
  perf record -F "$F" -o "$OUT/$name.perf.data" -p "$vault_pid,$manager_pid" -- sleep "$SECONDS_EACH" \
    >/dev/null 2>&1 &
  local perf_pid=$!
  wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_EACH}s" --latency "$@" >"$OUT/$name.wrk.txt"
  grep -E "Requests/sec|Non-2xx|requests in| 50%| 99%" "$OUT/$name.wrk.txt" || true
  local requests
  requests="$(awk '/requests in/ {print $1}' "$OUT/$name.wrk.txt")"
  wait "$perf_pid" || true
  [ "${FLAMEGRAPH:-0}" = 1 ] && flamegraphs "$name" "$@"
  for which in vault manager; do
    local pid_var="${which}_pid"
    echo "-- $which: CPU ms per request by category (self time) --"
    categorise "$OUT/$name.perf.data" "${!pid_var}" "${requests:-1}"
    perf report -i "$OUT/$name.perf.data" --pid "${!pid_var}" --no-children -n --sort dso,sym --stdio \
      --percent-limit 0.3 2>/dev/null | grep -v '^#' | grep -v '^$' >"$OUT/$name-$which.txt" || true
  done
}

flamegraphs() { # phase name, wrk arguments...: a second run with call stacks, one SVG per service
  local name="$1"; shift
  perf record -F 99 --call-graph dwarf,16384 -o "$OUT/$name.stacks.data" -p "$vault_pid,$manager_pid" \
    -- sleep "$SECONDS_EACH" >/dev/null 2>&1 &
  local perf_pid=$!
  wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_EACH}s" "$@" >/dev/null
  wait "$perf_pid" || true
  for which in vault manager; do
    local pid_var="${which}_pid"
    perf script -i "$OUT/$name.stacks.data" --pid "${!pid_var}" 2>/dev/null | inferno-collapse-perf |
      inferno-flamegraph --title "$which, $name (wrk -c$CONNECTIONS)" >"$OUT/$name-$which.svg" || true
  done
}
if [ "${FLAMEGRAPH:-0}" = 1 ] && ! command -v inferno-flamegraph >/dev/null; then
  cargo install inferno --locked
fi

phase store -s "$RUN/store.lua" https://127.0.0.1:18000/api/keys
phase read -s "$RUN/read.lua" https://127.0.0.1:18001/api/keys
echo "(per-symbol reports: $OUT/{store,read}-{vault,manager}.txt; perf.data alongside)"
