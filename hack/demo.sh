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
			jq -r --arg ctx "$ctx" '.items[] | [((.metadata.annotations["multicluster.admiralty.io/proxy-pod"] // "-") | split("/") | last), $ctx, (.spec.nodeName // "-"), .status.phase] | @tsv'
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

CLUSTER1=cluster1
NS=$NAMESPACE
kc() { local ctx=$1; shift; "$KUBECTL" --context "$ctx" "$@"; }

for ctx in cluster2 cluster3; do
	step "Source c1 in $ctx (the identity cluster1 uses there)"
	cat <<EOF | kc "$ctx" apply -f -
apiVersion: multicluster.admiralty.io/v1alpha1
kind: Source
metadata:
  name: c1
  namespace: $NS
spec:
  serviceAccountName: c1
EOF
done

step "Service account exchange, cluster2: the Getting Started's kubectl + jq commands"
until SECRET_NAME=$(kc cluster2 get serviceaccount c1 --namespace "$NS" --output json | jq -er '.secrets[0].name') &&
	TOKEN=$(kc cluster2 get secret "$SECRET_NAME" --namespace "$NS" --output json | jq -er '.data.token' | base64 --decode) &&
	[[ -n $TOKEN ]]; do sleep 1; done
CONFIG=$(kc cluster2 config view --minify --raw --output json | jq '.users[0].user={token:"'"$TOKEN"'"}')
kc cluster1 create secret generic c2 --namespace "$NS" --from-literal=config="$CONFIG" --dry-run=client -o yaml |
	kc cluster1 apply -f -

step "Service account exchange, cluster3: kubectl admiralty export"
until "$ROOT/bin/kubectl-admiralty" export c1 --context cluster3 -n "$NS" --as c3 >/dev/null 2>&1; do sleep 1; done
"$ROOT/bin/kubectl-admiralty" export c1 --context cluster3 -n "$NS" --as c3 | kc cluster1 -n "$NS" apply -f -

step "Targets in cluster1: itself (c1), cluster2 (c2) and cluster3 (c3)"
cat <<EOF | kc cluster1 apply -f -
apiVersion: multicluster.admiralty.io/v1alpha1
kind: Target
metadata:
  name: c1
  namespace: $NS
spec:
  self: true
---
apiVersion: multicluster.admiralty.io/v1alpha1
kind: Target
metadata:
  name: c2
  namespace: $NS
spec:
  kubeconfigSecret:
    name: c2
---
apiVersion: multicluster.admiralty.io/v1alpha1
kind: Target
metadata:
  name: c3
  namespace: $NS
spec:
  kubeconfigSecret:
    name: c3
EOF
kc cluster1 -n "$NS" wait --for=condition=Ready target --all --timeout=120s
kc cluster1 wait --for=condition=Ready node -l virtual-kubelet.io/provider=admiralty --timeout=120s
kc cluster1 get nodes -l virtual-kubelet.io/provider=admiralty -L topology.kubernetes.io/region

step "The nginx Deployment, elected"
kc cluster1 label namespace "$NS" multicluster-scheduler=enabled --overwrite
cat <<EOF | kc cluster1 -n "$NS" apply -f -
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx
spec:
  replicas: 10
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
      annotations:
        multicluster.admiralty.io/elect: ""
    spec:
      containers:
      - name: nginx
        image: nginx
        resources:
          requests:
            cpu: 100m
            memory: 32Mi
        ports:
        - containerPort: 80
EOF
kc cluster1 -n "$NS" rollout status deployment nginx --timeout=180s

step "Where the pods of Deployment nginx landed"
summary
