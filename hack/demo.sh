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

# The rest of the Getting Started, each step with the seed's own command
# (its variables set to the sandbox's contexts and namespace).
CLUSTER1=cluster1 CLUSTER2=cluster2 CLUSTER3=cluster3 NAMESPACE=$NS
kubectl() { "$KUBECTL" "$@"; }
seed() { printf '\033[2m$ %s\033[0m\n' "$1"; eval "$1"; }

step "Check: proxy pods in cluster1, delegates in cluster2"
seed 'kubectl --context "$CLUSTER1" -n "$NAMESPACE" get pods -o wide'
seed 'kubectl --context "$CLUSTER2" -n "$NAMESPACE" get pods -o wide'

step "Advanced Scheduling: node labels (the sandbox's nodes already carry their region: us, eu, ap)"
seed 'kubectl --context "$CLUSTER1" get nodes -L topology.kubernetes.io/region'
seed 'kubectl --context "$CLUSTER2" get nodes -L topology.kubernetes.io/region'
seed 'kubectl --context "$CLUSTER1" label nodes -l virtual-kubelet.io/provider!=admiralty topology.kubernetes.io/region=us'
seed 'kubectl --context "$CLUSTER2" label nodes -l virtual-kubelet.io/provider!=admiralty topology.kubernetes.io/region=eu'

# wait_all_in waits until every pod of the Deployment runs in cluster ctx.
wait_all_in() {
	local ctx=$1 n
	kc cluster1 -n "$NS" rollout status deployment nginx --timeout=180s
	for _ in $(seq 180); do
		n=$(kc "$ctx" -n "$NS" get pods -l multicluster.admiralty.io/app=nginx --field-selector=status.phase=Running -o name | wc -l)
		[[ $n -ge 10 ]] && [[ $(kc cluster1 -n "$NS" get pods -l app=nginx -o name | wc -l) -eq 10 ]] && return 0
		sleep 1
	done
	echo "not every pod runs in $ctx after 3 minutes" >&2
	return 1
}

step "Advanced Scheduling: a node selector on region eu; every delegate moves to cluster2"
seed 'kubectl --context "$CLUSTER1" -n "$NAMESPACE" patch deployment nginx -p '"'"'{
  "spec":{
    "template":{
      "spec": {
        "nodeSelector": {
          "topology.kubernetes.io/region": "eu"
        }
      }
    }
  }
}'"'"''
wait_all_in cluster2
summary

step "Advanced Scheduling: the same with region ap; every delegate moves to cluster3"
seed 'kubectl --context "$CLUSTER1" -n "$NAMESPACE" patch deployment nginx -p '"'"'{"spec":{"template":{"spec":{"nodeSelector":{"topology.kubernetes.io/region":"ap"}}}}}'"'"''
wait_all_in cluster3
summary

step "Service Reroute and Globalization"
# (Skipped when a previous run of the demo already exposed it.)
kc cluster1 -n "$NS" get service nginx >/dev/null 2>&1 ||
	seed 'kubectl --context "$CLUSTER1" -n "$NAMESPACE" expose deployment nginx'
for _ in $(seq 60); do
	kc cluster3 -n "$NS" get service nginx >/dev/null 2>&1 && break
	sleep 1
done
seed 'kubectl --context "$CLUSTER1" -n "$NAMESPACE" get service nginx -o yaml'
echo "# The selector matches the delegates (multicluster.admiralty.io/app=nginx); a copy exists where they run:"
seed 'kubectl --context "$CLUSTER3" -n "$NAMESPACE" get service nginx -o yaml'
echo
echo "Not run: the seed's 'kubectl run foo ... curl nginx'. The sandbox's pods are kwok's, which run no"
echo "container, and there is no Cilium cluster mesh: see README, Compatibility with the original Getting Started."
