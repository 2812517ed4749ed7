#!/usr/bin/env bash
# The Helm chart (manifests/helm/multicluster-scheduler) is the one source of
# the install; manifests/multicluster-scheduler.yaml is rendered from it.
#
#   hack/manifests.sh render [DIR]  write DIR/manifests/multicluster-scheduler.yaml (DIR: the repository)
#   hack/manifests.sh lint          helm lint --strict and helm template with
#                                   several value sets (the sandbox then applies
#                                   its rendering to real API servers)
#
# hack/generate.sh calls render (so `make generate` renders and `make verify`
# compares); `make verify` calls lint.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
HELM=$ROOT/bin/helm
CHART=manifests/helm/multicluster-scheduler
# The plain YAML needs a cluster name: the chart refuses to render without
# one, and two clusters with the same name would take each other's
# PodChaperons for their own. The placeholder is replaced by CLUSTER_NAME,
# which the binaries refuse (not a DNS label) until it is edited.
PLACEHOLDER=cluster-name-placeholder

render() {
	local dir=${1:-$ROOT}
	{
		cat <<'HEADER'
# kube-scheduler-admiralty and admiralty-delegator, rendered from the Helm
# chart manifests/helm/multicluster-scheduler (hack/manifests.sh render; do
# not edit). Replace CLUSTER_NAME with this cluster's name (a DNS label,
# unique among the clusters that target each other), e.g.
#   sed s/CLUSTER_NAME/cluster1/ multicluster-scheduler.yaml | kubectl apply --server-side -f -
HEADER
		"$HELM" template admiralty "$dir/$CHART" --namespace admiralty --include-crds \
			--set clusterName=$PLACEHOLDER --set createNamespace=true |
			sed "s/$PLACEHOLDER/CLUSTER_NAME/g"
	} >"$dir/manifests/multicluster-scheduler.yaml.tmp"
	mv "$dir/manifests/multicluster-scheduler.yaml.tmp" "$dir/manifests/multicluster-scheduler.yaml"
	# config/rbac/: the chart's RBAC alone, one file per template, for
	# readers and scripts that apply RBAC by itself. Generated: edit the
	# chart's templates.
	local t f
	# An edit of a rendered file (rather than of the chart) is never
	# overwritten in silence.
	if [[ $dir == "$ROOT" ]] && git -C "$ROOT" rev-parse --verify -q HEAD:config/rbac/scheduler.yaml >/dev/null; then
		for t in namespace rbac-scheduler rbac-delegator rbac-self source-roles; do
			f=config/rbac/${t#rbac-}.yaml
			if ! git -C "$ROOT" diff --quiet HEAD -- "$f" && git -C "$ROOT" diff --quiet HEAD -- "$CHART/templates/$t.yaml"; then
				echo "$f was edited by hand: config/rbac/ is rendered from the chart; move the change into $CHART/templates/$t.yaml and run make generate again" >&2
				exit 1
			fi
		done
	fi
	rm -rf "$dir/config/rbac"
	mkdir -p "$dir/config/rbac"
	for t in namespace rbac-scheduler rbac-delegator rbac-self source-roles; do
		{
			echo "# Generated from $CHART/templates/$t.yaml by make generate: edit the chart, not this file."
			"$HELM" template admiralty "$dir/$CHART" --namespace admiralty --set clusterName=$PLACEHOLDER \
				--set createNamespace=true --show-only "templates/$t.yaml"
		} >"$dir/config/rbac/${t#rbac-}.yaml"
	done
}

lint() {
	cd "$ROOT"
	"$HELM" lint --strict "$CHART" --set clusterName=c1
	local tmp
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' RETURN
	# Value sets that take the templates' other branches.
	local -a sets=(
		"--set clusterName=c1"
		"--set clusterName=c1 --set replicas=1 --set podDisruptionBudget.enabled=false --set createNamespace=true"
		"--set clusterName=c1 --set scheduler.replaceDefaultScheduler=true --set delegator.webhookURL=https://127.0.0.1:9443/mutate-pods --set bindAddress=127.0.0.1"
		"--set clusterName=c1 --set-json scheduler.extraProfiles=[{\"schedulerName\":\"extra\"}] --set scheduler.pluginArgs.AdmiraltyProxy.scoringPolicy=MostAllocated"
		"-f hack/sandbox/values.yaml --set clusterName=c1"
	)
	local s i=0
	for s in "${sets[@]}"; do
		i=$((i + 1))
		# shellcheck disable=SC2086
		"$HELM" template admiralty "$CHART" --namespace admiralty $s >"$tmp/$i.yaml" ||
			{ echo "helm template $s failed" >&2; return 1; }
		"$HELM" lint --strict "$CHART" $s >/dev/null || { echo "helm lint $s failed" >&2; return 1; }
	done
	# Charts that must not render.
	if "$HELM" template admiralty "$CHART" >/dev/null 2>&1; then
		echo "the chart rendered without clusterName" >&2
		return 1
	fi
	if "$HELM" template admiralty "$CHART" --set clusterName=Not_A_Label >/dev/null 2>&1; then
		echo "the chart rendered with an invalid clusterName" >&2
		return 1
	fi
	echo "chart: lint and template OK (${#sets[@]} value sets)"
}

case ${1:-} in
render) render "${2:-}" ;;
lint) lint ;;
*)
	echo "usage: $0 render [DIR]|lint" >&2
	exit 2
	;;
esac
