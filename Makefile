# logcompactd — see README.md. `make demo` and `make test` are the two set-up commands.
GO       ?= go
BIN      := bin/logcompactd
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
FUZZTIME ?= 5s
STATICCHECK_VERSION ?= v0.8.2

.PHONY: all build test unit fuzz lint demo bench clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/logcompactd

# Everything CI runs: formatting, vet, staticcheck, the race-enabled tests (some
# need root: under CI=true they fail rather than skip), and a brief run of every fuzzer.
test: lint unit fuzz

unit:
	$(GO) test -race -count=1 -timeout 10m ./...

# Each fuzzer for $(FUZZTIME), starting from its committed seed corpus (testdata/fuzz).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseSize$$' -fuzztime $(FUZZTIME) ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzParseDuration$$' -fuzztime $(FUZZTIME) ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzParseRate$$' -fuzztime $(FUZZTIME) ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshalHistory$$' -fuzztime $(FUZZTIME) ./internal/growth
	$(GO) test -run '^$$' -fuzz '^FuzzJournalReplay$$' -fuzztime $(FUZZTIME) ./internal/fsx

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Builds, then runs the daemon for about a minute on a generated log directory
# with a synthetic writer (steady, burst, quiet). No root needed.
demo: build
	$(GO) build -o bin/demowriter ./scripts/demowriter
	./scripts/demo.sh

# Benchmarks recorded in BENCHMARKS.md (regenerate with `make bench`).
bench:
	./scripts/bench.sh

clean:
	rm -rf bin
