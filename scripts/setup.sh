#!/usr/bin/env bash
# Set up primal-attention on this machine, idempotently:
#   1. Debian packages the suites use (when run as root with apt-get; otherwise their tests skip visibly),
#   2. .venv with torch + torchvision pinned and installed first (both lie on the machines' disk),
#   3. fairseq-fixed without build isolation (the language suite), then the project in editable mode.
# A stamp records what was installed; a second run with nothing changed returns in about a second.
# Environment: EXTRAS (default "all"), PYTHON (default python3), SKIP_APT=1 to leave Debian packages alone.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS:-all}
VENV=.venv
TORCH_PINS=(torch==2.14.1 torchvision==0.29.1)
APT_PACKAGES=(slurm-wlm munge dataset-fashion-mnist bible-kjv bible-kjv-text)
STAMP=$VENV/.setup-stamp

log() { printf '[setup] %s\n' "$*"; }

install_debian_packages() {
    [ "${SKIP_APT:-0}" = 1 ] && return 0
    command -v apt-get >/dev/null 2>&1 || { log "no apt-get: skipping Debian packages"; return 0; }
    [ "$(id -u)" = 0 ] || { log "not root: skipping Debian packages (${APT_PACKAGES[*]})"; return 0; }
    local missing=()
    for pkg in "${APT_PACKAGES[@]}"; do
        dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing Debian packages: ${missing[*]}"
    if ! (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null); then
        log "WARNING: could not install ${missing[*]}; the tests that need them will skip with a reason"
    fi
}

stamp_value() {
    # editable installs map the packages that exist at install time: a new suite package means reinstall
    { cat pyproject.toml scripts/setup.sh; ls -d ./*/__init__.py 2>/dev/null; } | sha256sum | cut -d' ' -f1
    echo "$EXTRAS"
}

install_debian_packages

if [ ! -x "$VENV/bin/python" ]; then
    log "creating $VENV with $($PYTHON --version)"
    "$PYTHON" -m venv "$VENV"
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_value)" ] && "$VENV/bin/python" -c "import core, torch" 2>/dev/null; then
    log "environment is up to date ($VENV)"
    exit 0
fi

PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check -q)
log "installing ${TORCH_PINS[*]} first"
"${PIP[@]}" "${TORCH_PINS[@]}"
if [[ ",$EXTRAS," == *",all,"* || ",$EXTRAS," == *",language,"* ]]; then
    if ! "$VENV/bin/python" -c "import fairseq" 2>/dev/null; then
        log "installing fairseq-fixed (no build isolation, so it builds against the pinned torch)"
        "${PIP[@]}" cython numpy wheel setuptools
        "${PIP[@]}" --no-build-isolation fairseq-fixed
    fi
fi
log "installing primal-attention[$EXTRAS] in editable mode"
"${PIP[@]}" -e ".[$EXTRAS]" "${TORCH_PINS[@]}"
stamp_value > "$STAMP"
log "done: activate with 'source $VENV/bin/activate'"
