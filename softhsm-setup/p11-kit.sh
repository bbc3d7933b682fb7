#!/usr/bin/env bash
# p11-kit, found and started in one place for setup.sh, run-dev.sh, bench-tokens.sh and the
# end-to-end tests. Source it for the functions, or run it:
#   p11-kit.sh client-module        prints the path of p11-kit-client.so (the module services
#                                   load in isolation mode)
#   p11-kit.sh serve SOCKET TOKEN   serves TOKEN of $SOFTHSM2_CONF (provider $PKCS11_PROVIDER,
#                                   SoftHSM2 by default) on the unix socket SOCKET from a process
#                                   group of its own; prints the group's id once the socket exists.
#                                   The server's messages go to $P11KIT_LOG (default /dev/null).
# Stop a server with `kill -- -PID`: p11-kit forks a p11-kit-remote per client connection, and
# killing only the server leaves those serving.

# The path of p11-kit-client.so for this machine's architecture (Debian and Ubuntu install it
# under the multiarch triple), or failure when p11-kit-modules is not installed.
p11kit_client_module() {
  local triple candidate
  triple="$(gcc -print-multiarch 2>/dev/null || true)"
  for candidate in ${triple:+"/usr/lib/$triple/pkcs11/p11-kit-client.so"} /usr/lib/*/pkcs11/p11-kit-client.so \
    /usr/lib64/pkcs11/p11-kit-client.so /usr/lib/pkcs11/p11-kit-client.so; do
    if [ -e "$candidate" ]; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}

# Starts `p11-kit server` for token $2 on socket $1 in the background of the calling shell (so
# that it may `wait` for it) and sets p11kit_pid to its process group, once the socket exists.
# The server's messages go to $P11KIT_LOG, or to the caller's stderr when it is unset.
p11kit_serve() {
  local socket="$1" token="$2" provider="${PKCS11_PROVIDER:-/usr/lib/softhsm/libsofthsm2.so}"
  local log="${P11KIT_LOG:-/dev/stderr}"
  rm -f "$socket"
  # setsid: the server and its per-connection children form one process group.
  setsid p11-kit server -f -n "$socket" --provider "$provider" "pkcs11:token=$token" </dev/null >/dev/null 2>>"$log" &
  p11kit_pid=$!
  # Up to 30 s: a loaded 2-core machine can be slow to start a process.
  for _ in $(seq 1 600); do
    [ -S "$socket" ] && return 0
    if ! kill -0 "$p11kit_pid" 2>/dev/null; then
      echo "p11-kit.sh: the p11-kit server for token $token exited" >&2
      return 1
    fi
    sleep 0.05
  done
  echo "p11-kit.sh: the p11-kit server for token $token did not create $socket" >&2
  kill -- "-$p11kit_pid" 2>/dev/null || true
  return 1
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    client-module)
      p11kit_client_module || { echo "p11-kit.sh: p11-kit-client.so not found (install p11-kit-modules)" >&2; exit 1; }
      ;;
    serve)
      [ $# -eq 3 ] || { echo "usage: $0 serve SOCKET TOKEN" >&2; exit 2; }
      # Not our stderr: whoever reads it until it closes would wait for the server to end.
      P11KIT_LOG="${P11KIT_LOG:-/dev/null}" p11kit_serve "$2" "$3"
      echo "$p11kit_pid"
      ;;
    *)
      echo "usage: $0 client-module | serve SOCKET TOKEN" >&2
      exit 2
      ;;
  esac
fi
