#!/usr/bin/env bash
# Installs Debian's Prometheus (`prometheus` and `promtool`, 2.42 on Debian 12) for the
# observability tests (tests/observability/) when either is missing. Idempotent and instant
# once installed; needs root (or sudo without a password prompt) and the distribution's mirror.
#
# We never rely on the package's own service: the tests (and anyone trying the shipped config)
# start their own `prometheus` on a loopback port with deploy/prometheus/ and a temporary
# storage folder. Debian's service listens on *:9090 (every interface), so when this script is
# the one that installed the package on a machine running systemd, it disables and stops that
# service again; an installation made by someone else is left as it is.
# Prints the path of the prometheus binary.
set -euo pipefail
have() { command -v prometheus >/dev/null && command -v promtool >/dev/null; }
if have; then
    command -v prometheus
    exit 0
fi
say() { echo "install-prometheus: $*" >&2; }
command -v apt-get >/dev/null || { say "no apt-get; install Prometheus 2.x yourself"; exit 1; }
sudo=()
if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null || { say "needs root or sudo"; exit 1; }
    sudo=(sudo -n)
fi
apt=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
# `apt-get update` only when the package lists do not know the package (a fresh image).
if ! apt-cache policy prometheus 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    say "apt-get update (package lists do not know prometheus)"
    "${apt[@]}" update -qq >&2
fi
say "apt-get install prometheus (once)"
# --no-install-recommends: the recommended node exporter would be one more system service.
"${apt[@]}" install -y -qq --no-install-recommends prometheus >&2
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    say "disabling Debian's prometheus.service (we run our own, on loopback)"
    "${sudo[@]}" systemctl disable --now prometheus.service >&2 || true
fi
have || { say "apt-get ran, but prometheus/promtool are still not on PATH"; exit 1; }
command -v prometheus
