#!/usr/bin/env bash
# Sets up .venv with the project and its test tools, then installs the built-in corpora
# (the asterisk speech prompts through apt when run as root, the climbing motion capture
# from PyPI). Safe to run again: finished steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e '.[dev,dashboard]'
.venv/bin/python -m dvae.data.install asterisk mocap
