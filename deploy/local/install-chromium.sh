#!/usr/bin/env bash
# Installs Debian's Chromium for the dashboard's browser test (tests/api/test_dashboard_browser.py)
# when /usr/bin/chromium is missing. Idempotent and quick once installed; needs root (or sudo
# without a password prompt) and the distribution's package mirror. Prints the browser's path.
set -euo pipefail
browser=/usr/bin/chromium
if [[ -x $browser ]]; then
    echo "$browser"
    exit 0
fi
command -v apt-get >/dev/null || { echo "install-chromium: no apt-get; install Chromium yourself" >&2; exit 1; }
sudo=()
if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || { echo "install-chromium: needs root or sudo" >&2; exit 1; }
    sudo=(sudo -n)
fi
echo "install-chromium: apt-get install chromium (once)" >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >&2
[[ -x $browser ]] || { echo "install-chromium: apt-get ran, but $browser is still missing" >&2; exit 1; }
echo "$browser"
