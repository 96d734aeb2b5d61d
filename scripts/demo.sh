#!/usr/bin/env bash
# make demo: the whole pipeline on the local stack (which `make demo` has
# already brought up and migrated), the Circle and Kit simulators, a few
# hundred synthetic customers of traffic, then a report. Extra flags for
# `launchready demo` go in ARGS, e.g. make demo ARGS="--customers 500 --stay".
set -euo pipefail
cd "$(dirname "$0")/.."
set -a
# shellcheck disable=SC1091
source .stack/env
set +a
exec bin/launchready demo ${ARGS:-}
