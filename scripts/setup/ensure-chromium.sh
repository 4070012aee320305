#!/usr/bin/env bash
# Makes sure a headless-capable Chromium is installed, from the OS packages
# (nothing downloads a browser of its own here), and prints its path: the
# browser that renders pipe's charts and reports in tests.
set -euo pipefail
find_chromium() {
  for name in chromium chromium-browser google-chrome; do
    if command -v "$name" >/dev/null 2>&1; then
      command -v "$name"
      return 0
    fi
  done
  return 1
}
if find_chromium; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if command -v apt-get >/dev/null 2>&1; then
  echo "pipe: installing Chromium for the browser tests (apt-get)" >&2
  $SUDO apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >&2
elif command -v dnf >/dev/null 2>&1; then
  echo "pipe: installing Chromium for the browser tests (dnf)" >&2
  $SUDO dnf install -y -q chromium >&2
else
  echo "pipe: the browser tests need Chromium and no package manager known here can install it" >&2
  exit 1
fi
find_chromium
