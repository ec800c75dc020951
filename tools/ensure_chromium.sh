#!/usr/bin/env bash
# Best effort: Debian's Chromium for the search-tree viewer's headless-browser test.
# The test skips with a clear reason when /usr/bin/chromium is absent, so a failure
# here is reported, not fatal.
if [ -x /usr/bin/chromium ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "== no apt-get: the tree-viewer browser test will skip"; exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "== not root and no sudo: the tree-viewer browser test will skip"; exit 0; fi
fi
echo "== installing Debian's chromium for the tree-viewer test"
( $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null ) \
  || echo "== chromium could not be installed; the tree-viewer browser test will skip"
exit 0
