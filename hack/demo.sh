#!/usr/bin/env bash
# The Getting Started of the original project, on the sandbox: cluster1 is a
# source that targets itself, cluster2 and cluster3; the nginx Deployment
# with the elect annotation; then where its pods landed.
#
# Run by `make demo` after `make sandbox`.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SANDBOX_DIR=${SANDBOX_DIR:-$ROOT/.sandbox}
export KUBECONFIG=$SANDBOX_DIR/kubeconfig
KUBECTL=$ROOT/bin/kubectl
NAMESPACE=${NAMESPACE:-default}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# summary prints, for each proxy pod of the Deployment in cluster1, its
# virtual node and where its delegate runs, then the count per cluster.
summary() {
	local ctx
	printf '%-34s %-34s %-10s %-18s %s\n' "PROXY POD (cluster1)" "VIRTUAL NODE" "CLUSTER" "NODE" "PHASE"
	for ctx in $("$KUBECTL" config get-contexts -o name); do
		"$KUBECTL" --context "$ctx" -n "$NAMESPACE" get pods -l multicluster.admiralty.io/app=nginx -o json 2>/dev/null |
			jq -r --arg ctx "$ctx" '.items[] | [(.metadata.annotations["multicluster.admiralty.io/proxy-pod"] // "-"), $ctx, (.spec.nodeName // "-"), .status.phase] | @tsv'
	done >"$SANDBOX_DIR/delegates.tsv"
	"$KUBECTL" --context cluster1 -n "$NAMESPACE" get pods -l app=nginx -o json |
		jq -r '.items[] | [.metadata.name, (.spec.nodeName // "-"), .status.phase] | @tsv' |
		while IFS=$'\t' read -r proxy vnode phase; do
			local line
			line=$(awk -F'\t' -v p="$proxy" '$1 == p' "$SANDBOX_DIR/delegates.tsv" | head -1)
			if [[ -n $line ]]; then
				IFS=$'\t' read -r _ cluster node dphase <<<"$line"
				printf '%-34s %-34s %-10s %-18s %s\n' "$proxy" "$vnode" "$cluster" "$node" "$dphase"
			else
				printf '%-34s %-34s %-10s %-18s %s\n' "$proxy" "$vnode" "-" "-" "$phase (no delegate)"
			fi
		done
	echo
	printf 'Delegates per cluster:'
	for ctx in $("$KUBECTL" config get-contexts -o name); do
		printf ' %s=%s' "$ctx" "$(awk -F'\t' -v c="$ctx" '$2 == c' "$SANDBOX_DIR/delegates.tsv" | wc -l)"
	done
	echo
}

step "Sandbox"
"$ROOT/hack/sandbox.sh" status

if ! "$KUBECTL" --context cluster1 get crd targets.multicluster.admiralty.io >/dev/null 2>&1 ||
	! grep -q '"controller":"target"' "$SANDBOX_DIR/cluster1/delegator.log" 2>/dev/null; then
	step "Where the pods of Deployment nginx landed"
	summary
	cat <<'MSG'

The sandbox is up: three clusters (us, eu, ap), each scheduled by
kube-scheduler-admiralty, with admiralty-delegator running beside it.
Federation (Sources, Targets, virtual nodes, proxy and delegate pods) is not
implemented yet, so the demo stops here: the Getting Started steps (connect
cluster1 to itself, cluster2 and cluster3, deploy nginx with
multicluster.admiralty.io/elect) arrive with the federation core.
MSG
	exit 0
fi
