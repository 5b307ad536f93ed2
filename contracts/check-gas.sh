#!/usr/bin/env bash
# Fails when the full-lease gas walk costs differ from the checked-in
# .gas-snapshot (forge's own `snapshot --check` exits 0 on a difference here).
# After a deliberate change: `npm run gas`, then commit both gas files.
set -euo pipefail
cd "$(dirname "$0")"
fresh=$(mktemp)
trap 'rm -f "$fresh"' EXIT
./node_modules/.bin/forge snapshot --match-contract FullLeaseTest --snap "$fresh" >/dev/null
if ! diff -u .gas-snapshot "$fresh"; then
    echo "check-gas: gas changed; run 'npm run gas' and commit .gas-snapshot and gas-report.txt" >&2
    exit 1
fi
echo "check-gas: gas snapshot unchanged"
