#!/usr/bin/env bash
# What the real-browser UI test (tests/browser/test_ui_browser.py) needs, installed only when missing:
#   * Debian's Chromium at /usr/bin/chromium (apt; the test launches it by path),
#   * the Playwright package for Python (its wheel bundles the node driver; no `playwright install`,
#     no browser download).
# Idempotent; safe as root without a TTY. Called from .ci/run; PYTHON picks the interpreter (python3).
set -euo pipefail

PYTHON=${PYTHON:-python3}
export DEBIAN_FRONTEND=noninteractive
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

log() { echo "[browser-deps] $*"; }

if [ -x /usr/bin/chromium ]; then
    log "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
else
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            SUDO="sudo -n"
        else
            log "need root (or sudo) to apt-get install chromium" >&2
            exit 1
        fi
    fi
    log "installing chromium (apt)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        chromium fonts-dejavu-core
    [ -x /usr/bin/chromium ] || { log "apt-get finished but /usr/bin/chromium is missing" >&2; exit 1; }
fi

if "$PYTHON" -c "import playwright.sync_api" >/dev/null 2>&1; then
    log "playwright present"
else
    log "installing playwright (pip; driver only, no browser download)"
    "$PYTHON" -m pip install -q playwright
    "$PYTHON" -c "import playwright.sync_api"
fi
