# Warden — build, test, lint, demo, bench.
GO       ?= go
BIN      := bin/warden
# Version and commit stamped into the binary (warden version).
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT   ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
PKGS     := ./...
# Packages with concurrency run under the race detector in `make test`.
RACE_PKGS := ./fsm ./transport ./partitioner ./broker ./node ./analytics
# Fuzz targets run briefly in `make test`, each for FUZZTIME executions (a count, not a
# duration: a duration races the fuzz coordinator's deadline on Go 1.26, golang/go#75804).
FUZZTIME ?= 200000x
FUZZ_TARGETS := accesslog:FuzzCommon accesslog:FuzzCombined accesslog:FuzzVhostCombined accesslog:FuzzNginxCombined \
	accesslog:FuzzJSON accesslog:FuzzSyslogCombined accesslog:FuzzCustom accesslog:FuzzAuto accesslog:FuzzDetect \
	analytics:FuzzDecodeAggregate detect:FuzzDecodeDelta detect:FuzzDecodeStored accesslog:FuzzClient detect:FuzzJNDILookup shipper:FuzzParseShipped \
	pipeline:FuzzParseOrigin pipeline:FuzzUnpack accesslog:FuzzReadCombined accesslog:FuzzReadLayout

.PHONY: build test test-unit test-race test-e2e lint demo bench chaos clean

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/warden

## test: everything CI runs: unit tests, race tests, the multi-process tests. First
## scripts/test-deps checks the peers the tests run (as root it installs the missing ones).
test: build
	scripts/test-deps
	$(MAKE) --no-print-directory test-unit
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; f=$${t#*:}; \
	  out=$$($(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) ./$$pkg 2>&1) || { echo "$$out"; echo "fuzz $$f FAILED"; exit 1; }; \
	  echo "fuzz $$pkg $$f: ok ($(FUZZTIME))"; done
	$(GO) test -count=1 -race -timeout 15m ./node ./fsm ./transport ./analytics
	WARDEN_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 15m ./e2e

## test-unit: the unit tier (no processes of our own started, no fuzzing, no race detector).
UNIT_PKGS := ./accesslog ./analytics ./pipeline ./backpressure ./dashboard ./detect ./shipper ./chaos ./fsm ./transport ./partitioner ./broker ./workload ./internal/... ./cmd/...
test-unit:
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 10m $(UNIT_PKGS)

test-race:
	$(GO) test -count=1 -race -timeout 20m $(RACE_PKGS)

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 $(PKGS)


## demo: the embedded broker, a 3-node cluster and generated traffic; Ctrl-C stops it.
demo: build
	./$(BIN) demo

## bench: benchmarks, the failover figure (SIGKILL of real processes), the scale
## simulation (20 nodes in one process, node/scale_test.go) and the scale-out projection
## (owner vs replica CPU per line, pipeline/scaleout_test.go: 100 batches per mode).
bench: build
	rm -f bench/results.json
	$(GO) test -run '^$$' -bench . -benchmem ./accesslog ./analytics ./detect ./fsm ./partitioner
	$(GO) test -run '^$$' -bench ScaleOut -benchtime 100x ./pipeline
	WARDEN_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench 'AnalyzeVsGoAccess|DetectVsFail2ban|ClusterThroughput|SampleDrain' -benchtime 1x -timeout 30m ./e2e
	WARDEN_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench 'Latency|Footprint' -benchtime 1x -timeout 30m ./e2e
	WARDEN_BIN=$(CURDIR)/$(BIN) $(GO) test -run '^$$' -bench Failover -benchtime 1x -timeout 30m ./e2e
	$(GO) test -run '^$$' -bench ScaleSimulation -benchtime 1x -timeout 30m ./node
	$(GO) run bench/table.go bench/results.json

## chaos: the long chaos tier: 5 agents, 10 minutes, 2,500 records/s, a fault every 5.5 s
## (over 100), every kind; prints the report (needs root and nftables for partitions).
CHAOS_REPORT ?= bench/tmp/chaos
chaos: build
	rm -rf $(CHAOS_REPORT)
	./$(BIN) chaos --nodes 5 --duration 10m --rate 2500 --every 5.5s --seed $${SEED:-1} --report $(CHAOS_REPORT)

## package: dist/warden_$(PKG_VERSION)_ARCH.deb and the tarball (packaging/DESIGN.md).
## The version is Debian style, from git: tag v1.2.0 gives 1.2.0, 3 commits later
## 1.2.0+3.g1a2b3c4; before the first tag 0.1.0+g1a2b3c4. PKG_VERSION=... overrides it.
## The packaged binary is static (CGO_ENABLED=0) and carries that version.
PKG_VERSION ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null) \
	&& echo "$$v" | sed -e 's/^v//' -e 's/-\([0-9][0-9]*\)-g\([0-9a-f]*\)$$/+\1.g\2/' -e 's/-/~/g' \
	|| echo "0.1.0+g$$(git rev-parse --short HEAD 2>/dev/null || echo unknown)")
.PHONY: package
package:
	CGO_ENABLED=0 GOFLAGS="$$($(GO) env GOFLAGS) -trimpath" $(MAKE) --no-print-directory build VERSION=$(PKG_VERSION)
	cd packaging && $(GO) run . --binary ../$(BIN) --version $(PKG_VERSION) --arch $$($(GO) env GOARCH) --out ../dist

clean:
	rm -rf bin dist
