# Makefile of kube-scheduler-admiralty. `make help` lists the targets.
#
# Control-plane binaries are built once per version from the pinned modules
# and cached outside the clone ($(TOOLS_CACHE)), so a fresh clone on the same
# machine links them instead of rebuilding for minutes.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

K8S_VERSION  := v1.37.2
KWOK_VERSION := v0.8.0
# controller-gen generates deepcopy code and CRD YAML.
CONTROLLER_TOOLS_VERSION := v0.23.0
# helm lints and renders the chart (manifests/helm).
HELM_VERSION := v3.22.0

TOOLS_CACHE ?= $(HOME)/.cache/admiralty-tools
K8S_CACHE   := $(TOOLS_CACHE)/k8s-$(K8S_VERSION)
KWOK_CACHE  := $(TOOLS_CACHE)/kwok-$(KWOK_VERSION)
CTRL_CACHE  := $(TOOLS_CACHE)/controller-tools-$(CONTROLLER_TOOLS_VERSION)
HELM_CACHE  := $(TOOLS_CACHE)/helm-$(HELM_VERSION)
BIN := $(CURDIR)/bin

# Kubernetes binaries must report a parseable version: kubectl, kwokctl and
# Helm read it. The component-base variables serve servers, the client-go
# ones serve clients.
K8S_MINOR := $(word 2,$(subst ., ,$(K8S_VERSION)))
VERSION_LDFLAGS := $(foreach p,k8s.io/component-base/version k8s.io/client-go/pkg/version,\
	-X $(p).gitVersion=$(K8S_VERSION) -X $(p).gitMajor=1 -X $(p).gitMinor=$(K8S_MINOR) \
	-X $(p).gitTreeState=clean -X $(p).buildDate=1970-01-01T00:00:00Z)

GO_SOURCES := $(shell find . -name '*.go' -not -path './hack/tools/*' -not -path './.sandbox*' -not -path './bin/*') go.mod go.sum

K8S_TOOLS  := kube-apiserver kube-controller-manager kubectl etcd
CODEGEN_TOOLS := client-gen lister-gen informer-gen
KWOK_TOOLS := kwok kwokctl

.PHONY: help
help: ## List the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Tools

.PHONY: tools
tools: $(addprefix $(BIN)/,$(K8S_TOOLS) $(KWOK_TOOLS) helm) codegen-tools debian-packages ## Build the pinned control plane, kwok and code generators into bin/ (cached by version).

.PHONY: codegen-tools
codegen-tools: $(addprefix $(BIN)/,controller-gen $(CODEGEN_TOOLS))

.PHONY: debian-packages
debian-packages:
	@missing=""; for p in jq curl; do command -v $$p >/dev/null || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; \
	fi

# A symlink into the cache; relinked when a pinned version changes.
$(BIN)/%: $(BIN)/.versions
	@test -x $(K8S_CACHE)/$* -o -x $(KWOK_CACHE)/$* -o -x $(CTRL_CACHE)/$* -o -x $(HELM_CACHE)/$* || $(MAKE) --no-print-directory cache-$*
	@for d in $(K8S_CACHE) $(KWOK_CACHE) $(CTRL_CACHE) $(HELM_CACHE); do if [ -x $$d/$* ]; then ln -sf $$d/$* $@; fi; done

$(BIN):
	@mkdir -p $@

$(BIN)/.versions: FORCE | $(BIN)
	@v="$(K8S_VERSION) $(KWOK_VERSION) $(CONTROLLER_TOOLS_VERSION) $(HELM_VERSION)"; [ "$$(cat $@ 2>/dev/null)" = "$$v" ] || echo "$$v" > $@

.PHONY: FORCE
FORCE:

cache-kube-apiserver cache-kube-controller-manager cache-kubectl: cache-%:
	@echo "Building $* $(K8S_VERSION) into $(K8S_CACHE) (once per machine; minutes)"
	@mkdir -p $(K8S_CACHE)
	cd hack/tools && go build -ldflags "-s -w $(VERSION_LDFLAGS)" -o $(K8S_CACHE)/$*.tmp k8s.io/kubernetes/cmd/$* && mv $(K8S_CACHE)/$*.tmp $(K8S_CACHE)/$*

$(addprefix cache-,$(CODEGEN_TOOLS)): cache-%:
	@mkdir -p $(K8S_CACHE)
	cd hack/tools && go build -o $(K8S_CACHE)/$*.tmp k8s.io/code-generator/cmd/$* && mv $(K8S_CACHE)/$*.tmp $(K8S_CACHE)/$*

cache-etcd:
	@mkdir -p $(K8S_CACHE)
	cd hack/tools && go build -ldflags "-s -w" -o $(K8S_CACHE)/etcd.tmp ./etcd && mv $(K8S_CACHE)/etcd.tmp $(K8S_CACHE)/etcd

cache-kwok cache-kwokctl: cache-%:
	@mkdir -p $(KWOK_CACHE)
	GOBIN=$(KWOK_CACHE) go install sigs.k8s.io/kwok/cmd/$*@$(KWOK_VERSION)

cache-controller-gen:
	@mkdir -p $(CTRL_CACHE)
	GOBIN=$(CTRL_CACHE) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

# helm in its own module (go install pkg@version), away from hack/tools' k8s
# pins; the ldflags are helm's own Makefile's: its version, and the
# Kubernetes version that `helm template` and `helm lint` assume (its
# client-go's, v0.37: 1.37).
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	$(foreach p,pkg/lint/rules pkg/chartutil,-X helm.sh/helm/v3/$(p).k8sVersionMajor=1 -X helm.sh/helm/v3/$(p).k8sVersionMinor=37)
cache-helm:
	@mkdir -p $(HELM_CACHE)
	GOBIN=$(HELM_CACHE) go install -ldflags "$(HELM_LDFLAGS)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

##@ Build

.PHONY: build
build: $(BIN)/kube-scheduler-admiralty $(BIN)/admiralty-delegator $(BIN)/kubectl-admiralty ## Build the project's binaries into bin/.

$(BIN)/kube-scheduler-admiralty $(BIN)/admiralty-delegator $(BIN)/kubectl-admiralty: $(BIN)/%: $(GO_SOURCES) | $(BIN)
	go build -ldflags "$(VERSION_LDFLAGS)" -o $@ ./cmd/$*

.PHONY: generate
generate: codegen-tools $(BIN)/helm ## Regenerate deepcopy code, typed clients, CRD YAML, the chart's copies and manifests/.
	hack/generate.sh

.PHONY: verify
verify: codegen-tools $(BIN)/helm ## gofmt, go vet, generated code and manifests/ up to date, helm lint.
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	hack/generate.sh --verify
	hack/manifests.sh lint

##@ Sandbox

.PHONY: sandbox
sandbox: tools build ## Three local clusters (contexts cluster1..3 in .sandbox/kubeconfig) with the project installed. Idempotent.
	hack/sandbox.sh up

.PHONY: sandbox-down
sandbox-down: ## Stop and remove everything `make sandbox` started.
	hack/sandbox.sh down

.PHONY: demo
demo: sandbox ## Sandbox up, clusters connected as in the Getting Started, the nginx Deployment, where its pods landed.
	hack/demo.sh

##@ Test

.PHONY: test
test: tools build ## Unit tests, then integration tests on a sandbox of their own (started and stopped here).
	go test -race $$(go list ./... | grep -v /test/integration)
	hack/test-integration.sh

# The sandbox needs as many clusters as the largest number of targets
# (BENCH_TARGETS, default "2 3"), and at least the usual three.
BENCH_CLUSTERS = $(shell echo 3 $(or $(BENCH_TARGETS),2 3) | tr ' ,' '\n\n' | grep -x '[0-9][0-9]*' | sort -n | tail -1)

.PHONY: bench
bench: tools build ## Benchmark on the sandbox: baseline vs T=2, 3 targets (BENCH_PODS, BENCH_TARGETS, BENCH_RUNS); results in bench/results/ and README.
	SANDBOX_CLUSTERS=$(BENCH_CLUSTERS) hack/sandbox.sh up
	BENCH_README=$${BENCH_README-README.md} go run ./bench
