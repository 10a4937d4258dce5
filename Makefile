# postern — make help lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/postern-dev/postern/internal/version.Version=$(VERSION)
GOFLAGS_B := -trimpath -ldflags '$(LDFLAGS)'
STATICCHECK_VERSION ?= v0.8.2
FUZZTIME  ?= 15s
DEMO_DIR  ?= $(CURDIR)/.demo

# binary name -> main package
BINARIES := \
	postern-signer:./signer \
	postern:./agent-helper \
	postern-bastion:./bastion \
	kube-exec:./kube-exec \
	postern-kube-forwarder:./kube-exec/cmd/postern-kube-forwarder \
	postern-testidp:./internal/testidp/cmd/postern-testidp

# OS packages the tests and the demo drive (binary:package).
PREREQS := ssh:openssh-client ssh-agent:openssh-client ssh-keygen:openssh-client \
	sftp:openssh-client scp:openssh-client sshd:openssh-server ip:iproute2 \
	useradd:passwd flock:util-linux unshare:util-linux \
	dpkg-deb:dpkg rpm:rpm systemd-analyze:systemd \
	rsync:rsync tmux:tmux haproxy:haproxy pkill:procps

.PHONY: help
help: ## show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  make %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build every binary into bin/ (static, CGO_ENABLED=0, as the packages ship them)
	@mkdir -p bin
	@set -e; for b in $(BINARIES); do \
		name=$${b%%:*}; pkg=$${b#*:}; \
		if [ -d "$$pkg" ]; then echo "go build $$pkg -> bin/$$name"; CGO_ENABLED=0 $(GO) build $(GOFLAGS_B) -o bin/$$name $$pkg; fi; \
	done

.PHONY: prereqs
prereqs: ## install missing OS packages (OpenSSH client and server, iproute2) with apt-get
	@missing=""; for p in $(PREREQS); do \
		bin=$${p%%:*}; pkg=$${p#*:}; \
		if ! command -v $$bin >/dev/null 2>&1 && [ ! -x /usr/sbin/$$bin ] && [ ! -x /sbin/$$bin ]; then missing="$$missing $$pkg"; fi; \
	done; \
	missing=$$(echo $$missing | tr ' ' '\n' | sort -u | tr '\n' ' '); \
	if [ -n "$${missing// /}" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO=sudo; else \
			echo "make: error: missing packages:$$missing (run as root or install them)"; exit 1; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@mkdir -p /run/sshd 2>/dev/null || true

KUBE_BUILD := internal/kubetest/build

.PHONY: kube-bins
kube-bins: ## build kube-apiserver, etcd, kubectl and testkubelet for the Kubernetes tests (cached; 10-15 min the first time)
	@GO=$(GO) bash $(KUBE_BUILD)/build.sh >/dev/null

.PHONY: kube-pin
kube-pin: ## repin the Kubernetes test binaries: make kube-pin KUBE_VERSION=v1.N.M (then update kubetest.Version)
	@test -n "$(KUBE_VERSION)" || { echo "make: error: set KUBE_VERSION=v1.N.M"; exit 1; }
	cd $(KUBE_BUILD) && ./update.sh $(KUBE_VERSION)

.PHONY: test
test: prereqs build kube-bins ## install what is missing, then run every test (unit, fuzz seeds, end to end)
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 45m ./...

.PHONY: test-race
test-race: prereqs ## run the unit tests with the race detector
	$(GO) test -race -count=1 -timeout 45m ./...

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 15s)
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg; \
		done; \
	done

.PHONY: lint
lint: ## go vet, gofmt and staticcheck
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

.PHONY: bench
bench: prereqs build ## benchmarks against stock OpenSSH and direct kubectl (root, ~9 min; kube phase after make kube-bins): writes docs/benchmarks.md
	@mkdir -p .cache/bench-bin
	$(GO) build -trimpath -o .cache/bench-bin/postern-bench ./internal/bench/cmd/postern-bench
	@# unstripped builds of the same source, so that perf can name functions
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-X github.com/postern-dev/postern/internal/version.Version=$(VERSION)' -o .cache/bench-bin/postern-bastion ./bastion
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-X github.com/postern-dev/postern/internal/version.Version=$(VERSION)' -o .cache/bench-bin/postern-signer ./signer
	.cache/bench-bin/postern-bench -bin bin -bastion-bin .cache/bench-bin/postern-bastion -signer-bin .cache/bench-bin/postern-signer $(BENCH_FLAGS)

.PHONY: package
package: ## build the .deb and .rpm packages (amd64, arm64) into dist/ with nfpm
	cd packaging/mkpkg && $(GO) run . -src $(CURDIR) -out $(CURDIR)/dist -version $(VERSION) -arch amd64,arm64 -formats deb,rpm

.PHONY: demo
demo: prereqs build ## run the whole flow locally: test IdP, signer, bastion, two sshd nodes (Ctrl-C stops it)
	@DEMO_DIR=$(DEMO_DIR) BIN=$(CURDIR)/bin bash internal/demo/demo.sh

.PHONY: demo-stop
demo-stop: ## stop a demo left running and remove its network namespaces
	@DEMO_DIR=$(DEMO_DIR) bash internal/demo/demo.sh stop

.PHONY: clean
clean: ## remove build output and demo state
	rm -rf bin dist $(DEMO_DIR)
