#!/usr/bin/env bash
# Generates deepcopy code and CRD YAML (controller-gen) and the typed
# clientset, listers and informers (code-generator) of apis/; copies the CRDs
# and config/scheduler-config.yaml into the Helm chart and renders the plain
# YAML of manifests/ from it (hack/manifests.sh).
#
#   hack/generate.sh           regenerate in place
#   hack/generate.sh --verify  regenerate in a copy and fail if anything differs
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/bin
MODULE=admiralty.io/multicluster-scheduler
CHART=manifests/helm/multicluster-scheduler
GENERATED=(apis/multicluster/v1alpha1/zz_generated.deepcopy.go apis/generated config/crd
	$CHART/crds $CHART/files manifests/multicluster-scheduler.yaml config/rbac)

generate() { # in the current directory, a copy of the module
	local header=hack/boilerplate.go.txt apis=$MODULE/apis/multicluster/v1alpha1
	rm -rf apis/generated config/crd
	"$BIN/controller-gen" object:headerFile="$header" paths=./apis/...
	"$BIN/controller-gen" crd:crdVersions=v1 paths=./apis/... output:crd:dir=config/crd
	"$BIN/client-gen" --go-header-file "$header" --clientset-name versioned \
		--input-base "" --input "$apis" \
		--output-dir apis/generated/clientset --output-pkg "$MODULE/apis/generated/clientset"
	"$BIN/lister-gen" --go-header-file "$header" \
		--output-dir apis/generated/listers --output-pkg "$MODULE/apis/generated/listers" "$apis"
	"$BIN/informer-gen" --go-header-file "$header" \
		--versioned-clientset-package "$MODULE/apis/generated/clientset/versioned" \
		--listers-package "$MODULE/apis/generated/listers" \
		--output-dir apis/generated/informers --output-pkg "$MODULE/apis/generated/informers" "$apis"
	# The chart ships the CRDs and the scheduler's base configuration.
	rm -rf "$CHART/crds" "$CHART/files"
	mkdir -p "$CHART/crds" "$CHART/files"
	cp config/crd/*.yaml "$CHART/crds/"
	cp config/scheduler-config.yaml "$CHART/files/"
	"$ROOT/hack/manifests.sh" render "$PWD"
}

if [[ ${1:-} != --verify ]]; then
	cd "$ROOT"
	generate
	exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$ROOT"
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} sh -c 'test -e "{}" && echo "{}"' |
	tar -cf - -T - | tar -xf - -C "$tmp"
(cd "$tmp" && generate) >/dev/null
status=0
for path in "${GENERATED[@]}"; do
	if ! diff -r "$ROOT/$path" "$tmp/$path" >/dev/null 2>&1; then
		echo "generated code out of date: $path (run make generate)" >&2
		status=1
	fi
done
exit $status
