#!/usr/bin/env bash
# Runs test/integration on a sandbox of its own: other cluster names, ports
# and directory than `make sandbox`, so a running demo is never touched.
# A sandbox this script starts, it removes on exit (by pid), even when a test
# fails; set KEEP_SANDBOX=1 to keep it between runs while developing.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SANDBOX_DIR=${TEST_SANDBOX_DIR:-$ROOT/.sandbox-test}
export SANDBOX_NAME=${TEST_SANDBOX_NAME:-admiralty-test}
export SANDBOX_PORT_BASE=${TEST_SANDBOX_PORT_BASE:-16600}
export SANDBOX_CLUSTERS=3

started=0
if ! "$ROOT/hack/sandbox.sh" running; then started=1; fi
cleanup() {
	local rc=$?
	if ((started)) && [[ -z ${KEEP_SANDBOX:-} ]]; then
		"$ROOT/hack/sandbox.sh" down || true
	elif [[ $rc -ne 0 ]]; then
		echo "sandbox kept in $SANDBOX_DIR (logs: $SANDBOX_DIR/cluster*/delegator.log)" >&2
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$ROOT/hack/sandbox.sh" up

export ADMIRALTY_SANDBOX=$SANDBOX_DIR/sandbox.json
cd "$ROOT"
go test -count=1 -timeout 30m ${TEST_FLAGS:-} ./test/integration/... "$@"
