#!/usr/bin/env bash
# Runs every fuzz target (func FuzzXxx in a _test.go file) for $FUZZTIME each.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-10s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
found=0
while IFS=: read -r file name; do
  pkg=./$(dirname "${file#./}")
  echo "fuzz: $pkg $name ($FUZZTIME)"
  if ! go test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
    # The fuzzing engine sometimes ends a time-boxed run with a bare
    # "context deadline exceeded" when the time is up while a worker is busy
    # (a loaded machine): no failing input is written then. A real failure
    # always writes one under testdata/fuzz and names it.
    if grep -q "context deadline exceeded" "$log" && ! grep -q "Failing input written" "$log"; then
      echo "fuzz: $name: time ran out while a worker was busy (no failing input); counted as a pass"
    else
      cat "$log"
      exit 1
    fi
  fi
  found=$((found + 1))
done < <(grep -rHoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' . | sed -E 's/func //' | grep -v '/.stack/')
echo "fuzz: $found targets, no failure"
