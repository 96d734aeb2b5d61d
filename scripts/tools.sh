#!/usr/bin/env bash
# Test tools from Debian's packages, installed only when missing:
#   chromium    headless browser for the ops page test (internal/ops)
#   prometheus  for promtool, which checks and unit-tests the alert rules and
#               every PromQL expression of the dashboards (dashboards/)
# Idempotent and quiet when everything is there; `make test` runs it first.
set -euo pipefail

say() { printf 'tools: %s\n' "$*"; }
die() { printf 'tools: ERROR: %s\n' "$*" >&2; exit 1; }

log=${TMPDIR:-/tmp}/launchready-tools-apt.log
pkgs=()
[ -x /usr/bin/chromium ] || pkgs+=(chromium)
command -v promtool >/dev/null || pkgs+=(prometheus)
[ ${#pkgs[@]} -eq 0 ] && exit 0

apt=(apt-get)
[ "$(id -u)" -eq 0 ] || apt=(sudo -n apt-get)

# The prometheus package would start a server of its own from its install
# script; only promtool is wanted. policy-rc.d (exit 101) tells the package
# scripts not to start services; a policy already in place is left alone.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ] && [ "$(id -u)" -eq 0 ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
fi
cleanup() { [ "$made_policy" = 1 ] && rm -f "$policy"; return 0; }
trap cleanup EXIT

say "apt-get update"
DEBIAN_FRONTEND=noninteractive "${apt[@]}" update -qq >"$log" 2>&1 || die "apt-get update failed (see $log)"
say "installing ${pkgs[*]}"
DEBIAN_FRONTEND=noninteractive "${apt[@]}" install -y -qq --no-install-recommends "${pkgs[@]}" >>"$log" 2>&1 \
  || die "apt-get install ${pkgs[*]} failed (see $log)"
[ -x /usr/bin/chromium ] || die "chromium did not install (see $log)"
command -v promtool >/dev/null || die "promtool did not install (see $log)"
say "ready: $(/usr/bin/chromium --version 2>/dev/null | head -1); $(promtool --version 2>&1 | head -1)"
