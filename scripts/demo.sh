#!/usr/bin/env bash
# make demo: until the traffic generator lands, the demo is the stack and its
# migrations, and the status of each service.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/stack.sh status
echo "demo: the stack is up and migrated; the pipeline demo (traffic, report) is not built yet."
