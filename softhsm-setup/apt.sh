# Sourced by the project's scripts that install Debian packages on demand (setup.sh,
# kryoptic.sh, containers.sh, schemathesis.sh, install-wrk.sh), so they all do it one way.

# apt_install PKG...: refreshes the package lists (a clean machine may have none, or stale
# ones), then installs PKG without recommends, non-interactively, as root or through sudo.
# apt's own output is dropped (a script's stdout may be its answer); its errors stay on stderr.
apt_install() {
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
