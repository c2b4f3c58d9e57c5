# shellcheck shell=bash
# shellcheck disable=SC2154 # repo and me are set by the command that sources this file
# Set-up steps shared by deploy/demo and deploy/test. Sourced, not run; expects `repo` (the
# repository root, already the working directory) and `me` (the calling command's name).

say() { printf '%s: %s\n' "$me" "$*"; }
die() { printf '%s: error: %s\n' "$me" "$*" >&2; exit 1; }

# The first Python >= 3.11 on PATH.
find_python() {
    local c
    for c in python3.11 python3 python; do
        if command -v "$c" >/dev/null && "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
            echo "$c"
            return 0
        fi
    done
    return 1
}

# .venv exists and holds `pip install -e '.[dev]'` of the current pyproject.toml. The stamp
# records the pyproject.toml hash it was installed from: unchanged -> nothing to do.
ensure_venv() {
    local py stamp=.venv/.metering-pyproject.sha256 want
    if [[ ! -x .venv/bin/python ]]; then
        py=$(find_python) || die "Python 3.11 or newer is needed (python3.11 / python3 on PATH)"
        say "creating .venv with $py ($("$py" --version 2>&1))"
        "$py" -m venv .venv
    fi
    want=$(sha256sum pyproject.toml | cut -d' ' -f1)
    if [[ ! -f $stamp || $(<"$stamp") != "$want" ]]; then
        say "pip install -e '.[dev]' (pyproject.toml changed or first run)"
        PIP_NO_INPUT=1 PIP_DISABLE_PIP_VERSION_CHECK=1 .venv/bin/python -m pip install -q -e '.[dev]'
        echo "$want" >"$stamp"
    fi
    export VIRTUAL_ENV="$repo/.venv"
    export PATH="$repo/.venv/bin:$PATH"
}

# A command from the distribution's packages (Debian/Ubuntu) when it is missing:
# ensure_apt_command COMMAND PACKAGE WHAT-ELSE-TO-DO.
ensure_apt_command() {
    local cmd=$1 package=$2 otherwise=$3
    command -v "$cmd" >/dev/null && return 0
    command -v apt-get >/dev/null || die "$cmd is missing and there is no apt-get: $otherwise"
    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        command -v sudo >/dev/null || die "$cmd is missing; installing it needs root or sudo"
        sudo=(sudo)
        [[ -t 0 ]] || sudo=(sudo -n) # no terminal: never wait for a password prompt
    fi
    say "installing $package with apt-get (once)"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "$package" >/dev/null
    command -v "$cmd" >/dev/null || die "apt-get ran, but $cmd is still not on PATH"
}

ensure_redis_server() {
    ensure_apt_command redis-server redis-server "install Redis 7 yourself"
}

# kcat: the tests produce with it as a non-Python producer would (compressed batches).
ensure_kcat() {
    ensure_apt_command kcat kcat "install kcat (kafkacat) yourself"
}

# Redoc, for the API's /docs page: its standalone bundle from npm (pinned version; npm checks
# the tarball's integrity), copied into metering/api/static/vendor/ (not in git). The tarball is
# cached in .cache/npm, so only the first set-up downloads it; no page ever loads it from a CDN.
REDOC_VERSION=2.4.0
ensure_api_docs() {
    local dest=metering/api/static/vendor cache=.cache/npm
    local tarball=$cache/redoc-$REDOC_VERSION.tgz
    if [[ -f $dest/redoc.standalone.js && $(cat "$dest/redoc.version" 2>/dev/null) == "$REDOC_VERSION" ]]; then
        return 0
    fi
    if [[ ! -f $tarball ]]; then
        ensure_apt_command npm npm "install Node.js (npm fetches Redoc $REDOC_VERSION for /docs once)"
        say "fetching Redoc $REDOC_VERSION from npm for /docs (once)"
        mkdir -p "$cache"
        (cd "$cache" && npm pack "redoc@$REDOC_VERSION" --silent >/dev/null) || die "npm pack redoc@$REDOC_VERSION failed"
    fi
    mkdir -p "$dest"
    tar -xzf "$tarball" -O package/bundles/redoc.standalone.js >"$dest/redoc.standalone.js"
    tar -xzf "$tarball" -O package/bundles/redoc.standalone.js.LICENSE.txt >"$dest/redoc.standalone.js.LICENSE.txt"
    echo "$REDOC_VERSION" >"$dest/redoc.version"
}

# Everything both commands need before a stack can start.
prepare() {
    ensure_venv
    ensure_api_docs
    ensure_redis_server
    ensure_kcat
    deploy/local/stack.sh fetch
}
