#!/usr/bin/env bash
# Set up Omni Studio on a fresh machine: a virtual environment in .venv with every package
# of requirements.txt (re-installed only when that file changes). With --test (or its old
# name --browser), also what the tests need from Debian: Chromium for the browser tests and
# PostgreSQL for the database tests (apt-get; needs root, as on the project machines).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat .venv/.requirements.sha 2>/dev/null || true)" != "$want" ]; then
  echo "installing packages into .venv (about 2 minutes the first time)..."
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > .venv/.requirements.sha
fi
if [ "${1:-}" = "--test" ] || [ "${1:-}" = "--browser" ]; then
  need=()
  command -v chromium >/dev/null 2>&1 || need+=(chromium)
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
  if [ ${#need[@]} -gt 0 ]; then
    echo "installing Debian ${need[*]} for the tests..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
fi
