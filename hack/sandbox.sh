#!/usr/bin/env bash
# Local multi-cluster sandbox: N kwokctl clusters (binary runtime, no images),
# each with the project installed from its Helm chart
# (manifests/helm/multicluster-scheduler, rendered with
# hack/sandbox/values.yaml): every object is applied, and the Deployment's two
# containers, which have no image here, run as local processes with the
# rendered arguments, acting as the chart's ServiceAccount (impersonation):
# kube-scheduler-admiralty as the cluster's scheduler, admiralty-delegator
# beside it. So the chart's RBAC, arguments and configuration are what the
# sandbox runs.
#
#   hack/sandbox.sh up       create or reuse the clusters (idempotent)
#   hack/sandbox.sh down     stop and remove everything `up` started, by pid
#   hack/sandbox.sh status   one line per cluster
#   hack/sandbox.sh running  exit 0 if every cluster answers
#   hack/sandbox.sh describe the sandbox as JSON (also in $SANDBOX_DIR/sandbox.json)
#
# Environment (defaults serve `make sandbox`; `make test` sets its own so the
# two never collide):
#   SANDBOX_DIR        state, kubeconfigs and logs        (.sandbox)
#   SANDBOX_NAME       prefix of the kwokctl cluster names (admiralty-demo)
#   SANDBOX_PORT_BASE  first of the fixed ports            (16400)
#   SANDBOX_CLUSTERS   number of clusters                  (3)
#   SANDBOX_NODES      kwok nodes per cluster              (3)
#
# Every port is fixed, so that two sandboxes (a demo and a test run) never
# take each other's, even while one is stopped. For cluster i:
# kube-apiserver BASE+i, delegator health and metrics BASE+20+i, delegator
# webhook BASE+40+i, virtual kubelet BASE+60+i, scheduler BASE+80+i, etcd
# BASE+100+i, etcd peer BASE+120+i, controller manager BASE+140+i, kwok
# BASE+160+i.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin
SANDBOX_DIR=${SANDBOX_DIR:-$ROOT/.sandbox}
mkdir -p "$SANDBOX_DIR"
SANDBOX_DIR=$(cd "$SANDBOX_DIR" && pwd)
SANDBOX_NAME=${SANDBOX_NAME:-admiralty-demo}
SANDBOX_PORT_BASE=${SANDBOX_PORT_BASE:-16400}
SANDBOX_CLUSTERS=${SANDBOX_CLUSTERS:-3}
SANDBOX_NODES=${SANDBOX_NODES:-3}
REGIONS=(us eu ap sa af me oc)

export KWOK_WORKDIR=$SANDBOX_DIR/kwok
# kwokctl defaults every binary to a download URL; nothing is downloaded here.
export KWOK_KUBECTL_BINARY=$BIN/kubectl
KUBECTL=$BIN/kubectl
KWOKCTL=$BIN/kwokctl
HELM=$BIN/helm
CHART=$ROOT/manifests/helm/multicluster-scheduler
# The identity of both processes: the chart's ServiceAccount.
IDENTITY=system:serviceaccount:admiralty:admiralty

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

region() { # region of cluster i (1-based)
	local i=$1
	if ((i <= ${#REGIONS[@]})); then echo "${REGIONS[i - 1]}"; else echo "r$i"; fi
}
kwok_name() { echo "$SANDBOX_NAME-cluster$1"; }
cluster_dir() { echo "$SANDBOX_DIR/cluster$1"; }
apiserver_port() { echo $((SANDBOX_PORT_BASE + $1)); }
health_port() { echo $((SANDBOX_PORT_BASE + 20 + $1)); }
webhook_port() { echo $((SANDBOX_PORT_BASE + 40 + $1)); }
kubelet_port() { echo $((SANDBOX_PORT_BASE + 60 + $1)); }
scheduler_port() { echo $((SANDBOX_PORT_BASE + 80 + $1)); }
etcd_port() { echo $((SANDBOX_PORT_BASE + 100 + $1)); }
etcd_peer_port() { echo $((SANDBOX_PORT_BASE + 120 + $1)); }
kcm_port() { echo $((SANDBOX_PORT_BASE + 140 + $1)); }
kwok_port() { echo $((SANDBOX_PORT_BASE + 160 + $1)); }
kc() { local i=$1; shift; "$KUBECTL" --kubeconfig "$(cluster_dir "$i")/admin.kubeconfig" "$@"; }

alive() { # pid file -> running?
	[[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop_pid() { # pid file: TERM, then KILL after 10 s
	local f=$1 pid
	alive "$f" || { rm -f "$f"; return 0; }
	pid=$(cat "$f")
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$f"
}

api_ready() { kc "$1" get --raw /readyz >/dev/null 2>&1; }

wait_for() { # description, timeout seconds, command...
	local what=$1 timeout=$2
	shift 2
	local deadline=$((SECONDS + timeout))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < deadline)) || die "timed out after ${timeout}s waiting for $what"
		sleep 0.5
	done
}

# scheduler_config writes the KubeSchedulerConfiguration that kwokctl
# starts cluster i's scheduler with, before the chart's replaces it
# (ensure_scheduler): the shipped one with this cluster's name. Prints its
# path.
scheduler_config() {
	local i=$1 f
	f=$(cluster_dir "$i")/scheduler-config.yaml
	sed "s|^\( *clusterName:\).*|\1 cluster$i|" "$ROOT/config/scheduler-config.yaml" >"$f"
	echo "$f"
}

# render_chart renders the chart for cluster i into $dir/chart.yaml: the
# sandbox's values, this cluster's name and ports, and the scheduler's base
# configuration read from config/scheduler-config.yaml itself (the chart's
# files/ copy is refreshed by make generate only).
render_chart() {
	local i=$1 dir
	dir=$(cluster_dir "$i")
	"$HELM" template admiralty "$CHART" --namespace admiralty --include-crds \
		-f "$ROOT/hack/sandbox/values.yaml" \
		--set createNamespace=true \
		--set "clusterName=cluster$i" \
		--set "scheduler.securePort=$(scheduler_port "$i")" \
		--set "delegator.healthPort=$(health_port "$i")" \
		--set "delegator.webhookPort=$(webhook_port "$i")" \
		--set "delegator.kubeletPort=$(kubelet_port "$i")" \
		--set "delegator.webhookURL=https://127.0.0.1:$(webhook_port "$i")/mutate-pods" \
		--set-file "scheduler.config=$ROOT/config/scheduler-config.yaml" \
		>"$dir/chart.yaml.tmp" || die "cluster$i: helm template failed"
	mv "$dir/chart.yaml.tmp" "$dir/chart.yaml"
}

# container_args prints the arguments of a container of the installed
# Deployment, one per line.
container_args() {
	local i=$1 container=$2
	kc "$i" -n admiralty get deployment admiralty -o json |
		jq -er --arg c "$container" '.spec.template.spec.containers[] | select(.name == $c) | .args[]'
}

cluster_exists() { [[ -f $KWOK_WORKDIR/clusters/$(kwok_name "$1")/kwok.yaml ]]; }

ensure_cluster() {
	local i=$1 name dir
	name=$(kwok_name "$i")
	dir=$(cluster_dir "$i")
	mkdir -p "$dir"
	if cluster_exists "$i"; then
		if ! api_ready "$i"; then
			log "cluster$i: starting stopped cluster $name"
			"$KWOKCTL" start cluster --name "$name" --wait 60s >"$dir/kwokctl.log" 2>&1 ||
				die "cluster$i: kwokctl start failed, see $dir/kwokctl.log"
		fi
	else
		log "cluster$i: creating $name (kube-apiserver on 127.0.0.1:$(apiserver_port "$i"))"
		cat >"$dir/kwokctl.yaml" <<EOF
apiVersion: config.kwok.x-k8s.io/v1alpha1
kind: KwokctlConfiguration
options:
  kubeApiserverPort: $(apiserver_port "$i")
  kubeSchedulerPort: $(scheduler_port "$i")
  etcdPort: $(etcd_port "$i")
  etcdPeerPort: $(etcd_peer_port "$i")
  kubeControllerManagerPort: $(kcm_port "$i")
  kwokControllerPort: $(kwok_port "$i")
  # A node (real or virtual) whose Lease lapses is NotReady after 40 s, as
  # in a default cluster (kwokctl's own default is 200 s).
  kubeControllerManagerNodeMonitorPeriodMilliseconds: 5000
  kubeControllerManagerNodeMonitorGracePeriodMilliseconds: 40000
EOF
		# --node-lease-duration-seconds: a restarted kwok controller takes over
		# the fake nodes when their leases expire; keep that short (outage
		# tests stop and start clusters).
		# kwok-stages.yaml: kwok's default Stages plus pods that terminate
		# after a set time (annotation sandbox.multicluster.admiralty.io/run-for).
		# --enable-crds: kwok's logs, attach, exec and port-forward rules as
		# API objects (hack/sandbox/kwok-debugging.yaml, and per pod in tests).
		# kubelet-client-*: the API server authenticates to kubelets with a
		# client certificate, as kubeadm sets it up, so that the delegator's
		# kubelet endpoint can authenticate and authorize it (kwok's
		# kwok-admin, in system:masters; kwok ignores it).
		# requestheader-*: the front-proxy settings a kubeadm cluster has,
		# which kube-apiserver publishes in extension-apiserver-authentication
		# and the scheduler's delegated authentication reads (without them it
		# logs an error at every retry); no certificate has the allowed name,
		# so no client can use the headers.
		# delete-collection-workers: a DeleteCollection (the namespace
		# controller's, make bench's cleanup) deletes 8 objects at once
		# instead of one after the other.
		# leader-elect=false: the only controller manager of its cluster;
		# with leader election it exits when a renewal times out, which
		# K = 10,000 on two cores made happen (and kwokctl does not
		# restart it).
		# kube-api-qps/burst: the controller manager's client limits
		# (default 20/30) made it untaint new nodes (node.kubernetes.io/
		# not-ready, put on at creation) about 10 per second, a GET and a
		# PATCH each: 60 bench nodes stayed unschedulable for 6 s. The
		# limits of the scheduler and the delegator (config/, chart).
		# The first --extra-args of each component must come before any
		# component's second: kwokctl v0.8.0 indexes its patches by the
		# flag's position and panics otherwise.
		"$KWOKCTL" --config "$ROOT/hack/sandbox/kwok.yaml" --config "$ROOT/hack/sandbox/kwok-stages.yaml" --config "$dir/kwokctl.yaml" create cluster \
			--name "$name" --runtime binary \
			--node-lease-duration-seconds 40 \
			--kube-apiserver-binary "$BIN/kube-apiserver" \
			--kube-controller-manager-binary "$BIN/kube-controller-manager" \
			--kube-scheduler-binary "$BIN/kube-scheduler-admiralty" \
			--kube-scheduler-config "$(scheduler_config "$i")" \
			--etcd-binary "$BIN/etcd" \
			--kwok-controller-binary "$BIN/kwok" \
			--extra-args kwok-controller=manage-all-nodes=false \
			--enable-crds Logs,ClusterLogs,Attach,ClusterAttach,Exec,ClusterExec,PortForward,ClusterPortForward \
			--extra-args "kube-apiserver=kubelet-client-certificate=$KWOK_WORKDIR/clusters/$name/pki/admin.crt" \
			--extra-args "kube-controller-manager=leader-elect=false" \
			--extra-args "kube-controller-manager=kube-api-qps=500" \
			--extra-args "kube-controller-manager=kube-api-burst=1000" \
			--extra-args "kube-apiserver=kubelet-client-key=$KWOK_WORKDIR/clusters/$name/pki/admin.key" \
			--extra-args "kube-apiserver=requestheader-client-ca-file=$KWOK_WORKDIR/clusters/$name/pki/ca.crt" \
			--extra-args "kube-apiserver=requestheader-allowed-names=front-proxy-client" \
			--extra-args "kube-apiserver=delete-collection-workers=8" \
			--kubeconfig "$dir/kwokctl.kubeconfig" \
			--wait 60s >"$dir/kwokctl.log" 2>&1 ||
			die "cluster$i: kwokctl create failed, see $dir/kwokctl.log"
	fi
	write_kubeconfigs "$i"
	wait_for "cluster$i API server" 60 api_ready "$i"
}

# ensure_scheduler runs cluster i's scheduler as the chart's container
# kube-scheduler-admiralty would run: its arguments, its configuration (the
# ConfigMap), the ServiceAccount's identity (clientConnection.kubeconfig,
# and for the secure port's delegated authentication and authorization,
# which in a pod use the service account). It stays kwokctl's process (the
# binary kwokctl linked, its pid and log files), so `kwokctl start` and
# `down` handle it; one started with other arguments or configuration (by
# kwokctl at creation or restart, or an older sandbox.sh), with an older
# binary, or not running is (re)started.
ensure_scheduler() {
	local i=$1 name dir wd pidfile conf
	name=$(kwok_name "$i")
	dir=$(cluster_dir "$i")
	wd=$KWOK_WORKDIR/clusters/$name
	pidfile=$wd/pids/kube-scheduler.pid
	conf=$wd/scheduler.yaml
	local -a args=("$wd/bin/kube-scheduler")
	local a
	while IFS= read -r a; do
		case $a in
		--config=*) args+=("--config=$conf") ;;
		*) args+=("$a") ;;
		esac
	done < <(container_args "$i" kube-scheduler-admiralty)
	args+=("--authentication-kubeconfig=$dir/delegator.kubeconfig" "--authorization-kubeconfig=$dir/delegator.kubeconfig")
	kc "$i" -n admiralty get configmap admiralty-scheduler-config -o json |
		jq -er '.data["scheduler-config.yaml"]' |
		sed "s|^clientConnection:\$|clientConnection:\n  kubeconfig: $dir/delegator.kubeconfig|" >"$conf.new"
	grep -q "kubeconfig: $dir/delegator.kubeconfig" "$conf.new" || die "cluster$i: the chart's scheduler configuration has no clientConnection"
	if alive "$pidfile" && cmp -s "$conf.new" "$conf" && [[ $dir/scheduler.stamp -nt $BIN/kube-scheduler-admiralty ]] &&
		[[ "$(tr '\0' ' ' <"/proc/$(cat "$pidfile")/cmdline")" == "${args[*]} " ]]; then
		rm -f "$conf.new"
		return 0
	fi
	log "cluster$i: (re)starting kube-scheduler-admiralty with the chart's arguments and configuration (log $wd/logs/kube-scheduler.log)"
	stop_pid "$pidfile"
	mv "$conf.new" "$conf"
	setsid "${args[@]}" >>"$wd/logs/kube-scheduler.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	date +%s >"$dir/scheduler.stamp"
}

write_kubeconfigs() {
	local i=$1 dir src
	dir=$(cluster_dir "$i")
	src=$dir/kwokctl.kubeconfig
	# The admin kubeconfig, with context, cluster and user named clusterI.
	KUBECONFIG=$src "$KUBECTL" config view --raw --minify --flatten --context "kwok-$(kwok_name "$i")" -o json |
		jq --arg n "cluster$i" '
			.clusters[0].name = $n | .users[0].name = $n |
			.contexts[0].name = $n | .contexts[0].context.cluster = $n | .contexts[0].context.user = $n |
			.["current-context"] = $n' >"$dir/admin.kubeconfig"
	# The scheduler and the delegator act as the chart's service account, so
	# the sandbox exercises the chart's RBAC as an in-cluster install does.
	jq --arg identity "$IDENTITY" '.users[0].user.as = $identity' \
		"$dir/admin.kubeconfig" >"$dir/delegator.kubeconfig"
	chmod 600 "$dir/admin.kubeconfig" "$dir/delegator.kubeconfig"
}

merge_kubeconfigs() {
	local files=() i
	for i in $(seq "$SANDBOX_CLUSTERS"); do files+=("$(cluster_dir "$i")/admin.kubeconfig"); done
	KUBECONFIG=$(
		IFS=:
		echo "${files[*]}"
	) "$KUBECTL" config view --raw --flatten >"$SANDBOX_DIR/kubeconfig.tmp"
	KUBECONFIG=$SANDBOX_DIR/kubeconfig.tmp "$KUBECTL" config use-context cluster1 >/dev/null
	chmod 600 "$SANDBOX_DIR/kubeconfig.tmp"
	mv "$SANDBOX_DIR/kubeconfig.tmp" "$SANDBOX_DIR/kubeconfig"
}

ensure_nodes() {
	local i=$1 n r
	r=$(region "$i")
	for n in $(seq 0 $((SANDBOX_NODES - 1))); do
		cat <<EOF
apiVersion: v1
kind: Node
metadata:
  name: cluster$i-node-$n
  annotations:
    kwok.x-k8s.io/node: fake
  labels:
    type: kwok
    kubernetes.io/hostname: cluster$i-node-$n
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    topology.kubernetes.io/region: $r
    topology.kubernetes.io/zone: $r-$n
spec:
  podCIDR: 10.$i.$n.0/24
  podCIDRs: [10.$i.$n.0/24]
status:
  allocatable: {cpu: "4", memory: 16Gi, pods: "110"}
  capacity: {cpu: "4", memory: 16Gi, pods: "110"}
---
EOF
	done | kc "$i" apply -f - >/dev/null
	wait_for "cluster$i nodes Ready" 60 kc "$i" wait --for=condition=Ready node -l type=kwok --timeout=1s
}

# install_project applies the rendered chart (CRDs first, then the rest;
# the Deployment has no replica here), server-side, as `kubectl apply
# --server-side -f manifests/multicluster-scheduler.yaml` would.
install_project() {
	local i=$1
	render_chart "$i"
	kc "$i" apply --server-side --force-conflicts -f "$CHART/crds/" >/dev/null
	kc "$i" wait --for=condition=Established -f "$CHART/crds/" --timeout=60s >/dev/null
	kc "$i" apply --server-side --force-conflicts -f "$(cluster_dir "$i")/chart.yaml" >/dev/null ||
		die "cluster$i: applying the rendered chart ($(cluster_dir "$i")/chart.yaml) failed"
}

scheduler_healthy() {
	curl -fsSk "https://127.0.0.1:$(scheduler_port "$1")/healthz" >/dev/null 2>&1
}

delegator_healthy() {
	curl -fsS "http://127.0.0.1:$(health_port "$1")/healthz" >/dev/null 2>&1
}

ensure_delegator() {
	local i=$1 dir pidfile
	dir=$(cluster_dir "$i")
	pidfile=$dir/delegator.pid
	# Delegates run on kwok's fake nodes: what they answer to logs, attach,
	# exec and port-forward, which the delegator's kubelet endpoint relays
	# from proxy pods. Clusters created before kwokctl enabled these kinds
	# have none: `hack/sandbox.sh down` and up again to get them.
	if kc "$i" get crd clusterlogs.kwok.x-k8s.io >/dev/null 2>&1; then
		printf '2026-01-01T00:00:00.000000000Z stdout F hello from cluster%s\n' "$i" >"$dir/delegate.log"
		sed -e "s|@LOGS_FILE@|$dir/delegate.log|g" -e "s|@CLUSTER@|cluster$i|g" "$ROOT/hack/sandbox/kwok-debugging.yaml" |
			kc "$i" apply -f - >/dev/null
	else
		log "cluster$i: no kwok logs/exec kinds (an older sandbox): kubectl logs and exec on delegates will fail"
	fi
	# The chart's container admiralty-delegator, with the service account's
	# identity (in a pod, the in-cluster configuration).
	local -a args=(--kubeconfig "$dir/delegator.kubeconfig")
	local a
	while IFS= read -r a; do args+=("$a"); done < <(container_args "$i" admiralty-delegator)
	# A delegator started with other flags (an older sandbox.sh) is
	# restarted, as is one whose binary changed.
	if alive "$pidfile" && [[ $pidfile -nt $BIN/admiralty-delegator && "$(cat "$dir/delegator.args" 2>/dev/null)" == "${args[*]}" ]]; then
		return 0
	fi
	if alive "$pidfile"; then
		log "cluster$i: delegator binary or flags changed, restarting it"
		stop_pid "$pidfile"
	fi
	log "cluster$i: starting admiralty-delegator (health on 127.0.0.1:$(health_port "$i"), log $dir/delegator.log)"
	# setsid: the delegator outlives the make that started it, like the
	# clusters do; `down` stops it by pid.
	setsid "$BIN/admiralty-delegator" "${args[@]}" >>"$dir/delegator.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	echo "${args[*]}" >"$dir/delegator.args"
}

up() {
	local i
	for tool in kubectl kwokctl kwok kube-apiserver kube-controller-manager etcd helm kube-scheduler-admiralty admiralty-delegator; do
		[[ -x $BIN/$tool ]] || die "missing $BIN/$tool: run make tools build"
	done
	command -v jq >/dev/null || die "jq is missing: run make tools"
	for i in $(seq "$SANDBOX_CLUSTERS"); do ensure_cluster "$i"; done
	merge_kubeconfigs
	for i in $(seq "$SANDBOX_CLUSTERS"); do
		ensure_nodes "$i"
		install_project "$i"
		ensure_scheduler "$i"
		ensure_delegator "$i"
	done
	for i in $(seq "$SANDBOX_CLUSTERS"); do
		wait_for "cluster$i scheduler health (see $KWOK_WORKDIR/clusters/$(kwok_name "$i")/logs/kube-scheduler.log)" 60 scheduler_healthy "$i"
		wait_for "cluster$i delegator health (see $(cluster_dir "$i")/delegator.log)" 60 delegator_healthy "$i"
	done
	describe >"$SANDBOX_DIR/sandbox.json"
	status
	log "sandbox ready: export KUBECONFIG=$SANDBOX_DIR/kubeconfig (contexts cluster1..cluster$SANDBOX_CLUSTERS)"
}

down() {
	local i dir name
	for dir in "$SANDBOX_DIR"/cluster*/; do
		[[ -d $dir ]] || continue
		stop_pid "$dir/delegator.pid"
	done
	if [[ -d $KWOK_WORKDIR/clusters ]]; then
		# Stop every component of every cluster by pid, all at once, and wait
		# for them to exit, so that their ports are free for the next
		# sandbox; kwokctl then removes the rest.
		local pids=() f pid
		for f in "$KWOK_WORKDIR"/clusters/*/pids/*.pid; do
			[[ -f $f ]] && alive "$f" && pids+=("$(cat "$f")")
		done
		((${#pids[@]})) && kill -TERM "${pids[@]}" 2>/dev/null || true
		for _ in $(seq 100); do
			local left=0
			for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && left=1; done
			((left)) || break
			sleep 0.1
		done
		((${#pids[@]})) && kill -KILL "${pids[@]}" 2>/dev/null || true
		for name in $(ls "$KWOK_WORKDIR/clusters"); do
			log "deleting $name"
			"$KWOKCTL" delete cluster --name "$name" >/dev/null 2>&1 || true
		done
	fi
	rm -rf "$SANDBOX_DIR"
	log "sandbox removed"
}

status() {
	local i dir
	printf '%-10s %-24s %-8s %-10s %-22s %s\n' CONTEXT API-SERVER REGION SCHEDULER DELEGATOR NODES
	for i in $(seq "$SANDBOX_CLUSTERS"); do
		dir=$(cluster_dir "$i")
		local api="down" del="down" nodes="-" sched="down"
		scheduler_healthy "$i" && sched="healthy"
		if api_ready "$i"; then
			api="https://127.0.0.1:$(apiserver_port "$i")"
			nodes=$(kc "$i" get nodes -l type=kwok --no-headers 2>/dev/null | grep -c ' Ready ' || true)
		fi
		if alive "$dir/delegator.pid"; then
			del="pid $(cat "$dir/delegator.pid")"
			delegator_healthy "$i" && del="$del healthy" || del="$del unhealthy"
		fi
		printf '%-10s %-24s %-8s %-10s %-22s %s\n' "cluster$i" "$api" "$(region "$i")" "$sched" "$del" "$nodes"
	done
}

# describe prints the sandbox as JSON, for tests and tools.
describe() {
	local i
	for i in $(seq "$SANDBOX_CLUSTERS"); do
		jq -n --arg ctx "cluster$i" --arg kwok "$(kwok_name "$i")" --arg region "$(region "$i")" \
			--arg dir "$(cluster_dir "$i")" --arg workdir "$KWOK_WORKDIR/clusters/$(kwok_name "$i")" \
			--arg api "https://127.0.0.1:$(apiserver_port "$i")" \
			--arg health "http://127.0.0.1:$(health_port "$i")" \
			--arg schedHealth "https://127.0.0.1:$(scheduler_port "$i")" \
			--argjson webhook "$(webhook_port "$i")" --argjson kubelet "$(kubelet_port "$i")" \
			'{context: $ctx, kwokName: $kwok, region: $region, dir: $dir, kwokWorkdir: $workdir,
			  apiServer: $api, delegatorHealth: $health, schedulerHealth: $schedHealth, webhookPort: $webhook, kubeletPort: $kubelet,
			  adminKubeconfig: ($dir + "/admin.kubeconfig"), delegatorKubeconfig: ($dir + "/delegator.kubeconfig"),
			  delegatorPidFile: ($dir + "/delegator.pid")}'
	done | jq -s --arg kc "$SANDBOX_DIR/kubeconfig" --arg bin "$BIN" '{kubeconfig: $kc, bin: $bin, clusters: .}'
}

running() {
	local i
	for i in $(seq "$SANDBOX_CLUSTERS"); do
		[[ -f $(cluster_dir "$i")/admin.kubeconfig ]] && api_ready "$i" || return 1
	done
}

case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
running) running ;;
describe) describe ;;
*)
	echo "usage: $0 up|down|status|running|describe" >&2
	exit 2
	;;
esac
