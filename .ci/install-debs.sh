#!/usr/bin/env bash
# install-debs.sh PKG...: install the Debian packages that are missing.
# Needs root (or passwordless sudo) only when something is missing.
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts a cluster and a PgBouncer (on 6432, phigate's default port) on
# install; phigate's tests and benchmarks start their own.
if command -v systemctl >/dev/null 2>&1; then
  $sudo systemctl disable --now pgbouncer >/dev/null 2>&1 || true
fi
$sudo service pgbouncer stop >/dev/null 2>&1 || true
if command -v pg_lsclusters >/dev/null; then
  pg_lsclusters -h 2>/dev/null | while read -r ver name _; do
    $sudo pg_ctlcluster "$ver" "$name" stop 2>/dev/null || true
  done
fi
