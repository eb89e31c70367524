# popgate — build, run and test. `make test` is what CI runs (.ci/run).
#
# Targets:
#   build      bin/popgate, version from `git describe` (or "dev"); says how far a long build got
#   run        build, then `popgate serve` with its defaults (data in ./popgate-data, no root needed)
#              and the flags in ARGS: make run ARGS="--public-endpoint vpn.example.com:51820"
#   test-deps  install the Debian packages the end-to-end tests use (only what is missing), and
#              promtool (taken out of Debian's prometheus package, which would start a server)
#   lint       gofmt, go vet, staticcheck
#   test       test-deps + lint + every Go test (end-to-end tests need root and skip without it),
#              then test-packaging as root
#   fuzz       a short run of every fuzz target (FUZZTIME per target, default 10s); every target
#              runs even when one fails, the failures are listed at the end
#   clean      remove build output (never ./popgate-data)
#   bench      popgate against stock wireguard-go in namespaces (root; see below); bench-deps
#              installs what it needs beyond test-deps (dnsperf, dnsmasq-base)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := $(PATH):/usr/local/go/bin

GO ?= go
BIN := bin/popgate
VERSION := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# The suite: unit tests take seconds; the end-to-end tests a few minutes. CI allows 90.
TEST_TIMEOUT ?= 20m
FUZZTIME ?= 10s
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
# Stock WireGuard and network tools the end-to-end tests drive (see shared TESTBED.md; dig from
# bind9-dnsutils is the stock DNS client), and Debian's sqlite3, which must be able to check
# popgate's database (store's tests).
DEB_DEPS := wireguard-tools wireguard-go iproute2 iptables iputils-ping iperf3 chromium sqlite3 bind9-dnsutils
# What `make bench` needs beyond them: dnsperf, and dnsmasq as the DNS case's stock resolver
# (dnsmasq-base: the binary alone; the dnsmasq package would start a system-wide service).
BENCH_DEB_DEPS := dnsperf dnsmasq-base

# ARGS are the flags `make run` passes to `popgate serve`.
ARGS ?=
# FIRST_BUILD is how long a build with an empty Go build cache took on a 2-core VM (measured:
# GOCACHE=$(mktemp -d) nice go build ./cmd/popgate took 244 s while other jobs kept the load at 10-16).
FIRST_BUILD := 4 minutes

.PHONY: all build run test-deps lint test fuzz clean bench bench-deps

all: build

# go build -v names each package as it compiles it (none when the cache has them all): after
# the first few a build is a long one, and every 50 packages it says how far it got. Other
# lines (errors) pass through.
build:
	@echo "$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/popgate"
	@total=$$($(GO) list -deps ./cmd/popgate | wc -l); \
	$(GO) build -v -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/popgate 2>&1 | \
	awk -v total="$$total" ' \
		/^[A-Za-z0-9._~\/-]+$$/ { \
			if (++n == 10) printf "build: compiling $(BIN) and the packages it uses (%d in all, the Go standard library included): a first build takes about $(FIRST_BUILD) on a 2-core VM, later builds seconds\n", total; \
			if (n % 50 == 0) printf "build: %d of %d packages compiled\n", n, total; \
			fflush(); next } \
		{ print; fflush() }'

run: build
	$(BIN) serve $(ARGS)

test-deps:
	@missing=""; \
	if ! command -v dpkg-query >/dev/null; then \
		echo "test-deps: not a Debian system; install by hand: $(DEB_DEPS)"; exit 0; \
	fi; \
	for p in $(DEB_DEPS); do \
		dpkg-query -W -f='$${Status}\n' "$$p" 2>/dev/null | grep -q '^install ok installed$$' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "test-deps: missing Debian packages:$$missing"; \
		echo "test-deps: install them as root: apt-get install -y --no-install-recommends$$missing"; \
		echo "test-deps: (the end-to-end tests need root and skip without it)"; \
		exit 0; \
	fi; \
	echo "test-deps: installing$$missing"; \
	export DEBIAN_FRONTEND=noninteractive; \
	apt-get update -qq; \
	apt-get install -y -qq --no-install-recommends$$missing </dev/null
	@# promtool checks /metrics in TestServeMetrics. Debian ships it only in the prometheus
	@# package, which would install and start a Prometheus server: take the tool alone.
	@if command -v promtool >/dev/null || ! command -v apt-get >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ]; then \
		echo "test-deps: no promtool; as root, make test-deps takes it out of Debian's prometheus package"; \
		exit 0; \
	fi; \
	echo "test-deps: installing /usr/local/bin/promtool from Debian's prometheus package (the tool only, no server)"; \
	tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	apt-get update -qq; \
	(cd "$$tmp" && apt-get download -qq prometheus 2>/dev/null); \
	dpkg-deb --fsys-tarfile "$$tmp"/prometheus_*.deb | tar -x -C "$$tmp" ./usr/bin/promtool; \
	install -m 0755 "$$tmp/usr/bin/promtool" /usr/local/bin/promtool

lint:
	@bad=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
	if [ -n "$$bad" ]; then echo "gofmt: these files need \`gofmt -w\`:"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

test: test-deps lint
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) test-packaging; \
	else echo "test: skipping test-packaging (the .deb in a container, the image under qemu): it needs root"; fi

fuzz:
	@failed=""; \
	for pkg in $$($(GO) list ./...); do \
		targets=$$($(GO) test -list '^Fuzz' "$$pkg" | grep '^Fuzz' || true); \
		for f in $$targets; do \
			echo "fuzz: $$pkg $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) "$$pkg" || failed="$$failed $$pkg.$$f"; \
		done; \
	done; \
	if [ -n "$$failed" ]; then \
		echo "fuzz: these targets failed (their output is above; a crasher is kept in the package's testdata/fuzz):"; \
		for f in $$failed; do echo "  $$f"; done; \
		exit 1; \
	fi; \
	echo "fuzz: every target passed"

clean:
	rm -rf bin

# bench-deps: test-deps with BENCH_DEB_DEPS too.
bench-deps:
	@$(MAKE) --no-print-directory test-deps DEB_DEPS="$(DEB_DEPS) $(BENCH_DEB_DEPS)"

# bench: popgate against stock wireguard-go (upstream, go.mod's version) in network namespaces,
# every case alternating in one run; writes the table between the bench markers of
# BENCHMARKS.md. Needs root; about 30 minutes on a 2-core VM. Not part of `make test` (build
# tag bench). cmd/internal/bench/doc.go lists the BENCH_* variables that shorten a run.
bench: bench-deps build
	POPGATE_BIN=$(CURDIR)/$(BIN) $(GO) test -tags bench -count=1 -timeout 75m -v -run '^TestBench$$' ./cmd/internal/bench/

# Packages (packaging/README.md): the .deb, the VM image, and their tests.
#   deb             dist/popgate_<version>-1_amd64.deb (nfpm from packaging/tools, reproducible)
#   image           dist/popgate-<version>-amd64.qcow2 (Debian 12 + the .deb; needs root)
#   test-packaging  the .deb in a systemd-nspawn container, the image booted under qemu (root)
# The version comes from `git describe` (packaging/version.sh), computed once per make run.
PKG_VERSION = $(eval PKG_VERSION := $$(shell packaging/version.sh))$(PKG_VERSION)
PKG_DEB = dist/popgate_$(PKG_VERSION)-1_amd64.deb
PKG_IMAGE = dist/popgate-$(PKG_VERSION)-amd64.qcow2

.PHONY: deb image test-packaging

deb:
	POPGATE_VERSION='$(PKG_VERSION)' packaging/deb/build.sh

image: deb
	packaging/deps.sh image
	POPGATE_VERSION='$(PKG_VERSION)' packaging/image/build.sh '$(PKG_DEB)'

test-packaging: image
	packaging/deps.sh test
	$(GO) -C packaging/tools vet ./...
	POPGATE_TEST_PACKAGING=deb,image POPGATE_TEST_DEB='$(PKG_DEB)' POPGATE_TEST_IMAGE='$(PKG_IMAGE)' \
		$(GO) test -count=1 -v -timeout 60m ./packaging/
