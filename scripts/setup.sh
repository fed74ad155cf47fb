#!/usr/bin/env bash
# Sets up .venv with the project and its test tools, then installs the built-in corpora
# (the asterisk speech prompts through apt when run as root, the climbing motion capture
# from PyPI) and, as root, the Debian packages the tests use (a few real test recordings,
# and Chromium, which opens the HTML report). Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e '.[dev,dashboard]'
.venv/bin/python -m dvae.data.install asterisk mocap
test_packages="pocketsphinx-testdata chromium chromium-driver"
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  missing=$(for p in $test_packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    apt-get install -y -q --no-install-recommends $missing >/dev/null
  fi
else
  echo "setup: for the full test suite, install as root: apt-get install $test_packages"
fi
