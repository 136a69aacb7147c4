#!/usr/bin/env bash
# Installs what the tests use to open outputs as people do: Debian's chromium (headless browser)
# and python3-qgis (QGIS 3.22 for the system python3). Skips quietly where it cannot install;
# the tests that need them then skip with a reason.
set -u
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
/usr/bin/python3 -c "import qgis.core" >/dev/null 2>&1 || need+=(python3-qgis)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "note: ${need[*]} missing and no apt-get: browser/QGIS tests will be skipped" >&2; exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
    echo "note: ${need[*]} missing and not root: browser/QGIS tests will be skipped" >&2; exit 0
  fi
fi
echo "installing ${need[*]} (Debian packages) ..." >&2
$SUDO apt-get update -qq >/dev/null 2>&1 || true
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
  || echo "note: could not install ${need[*]}: browser/QGIS tests will be skipped" >&2
exit 0
