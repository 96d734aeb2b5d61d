#!/usr/bin/env bash
# Runs every fuzz target (func FuzzXxx in a _test.go file) for $FUZZTIME each.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
found=0
while IFS=: read -r file name; do
  pkg=./$(dirname "$file")
  echo "fuzz: $pkg $name ($FUZZTIME)"
  go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" >/tmp/lr-fuzz.log 2>&1 || { cat /tmp/lr-fuzz.log; exit 1; }
  found=$((found + 1))
done < <(grep -rHoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' . | sed -E 's/func //' | grep -v '/.stack/')
echo "fuzz: $found targets, no failure"
