# logcompactd — see README.md. `make demo` and `make test` are the two set-up commands.
GO       ?= go
BIN      := bin/logcompactd
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# A count, not a duration: a -fuzztime duration races Go's fuzz coordinator
# (golang/go#75804, unfixed in go1.26) and fails with "context deadline exceeded".
FUZZTIME ?= 100000x
STATICCHECK_VERSION ?= v0.8.2

PREFIX   ?= /usr
DESTDIR  ?=
UNITDIR  ?= /lib/systemd/system
DEB_ARCH ?= $(shell dpkg --print-architecture 2>/dev/null || echo amd64)
DIST     ?= dist
DEB_VERSION ?= $(shell git describe --tags 2>/dev/null | sed 's/^v//' || true)

SOAK     ?= 10m
SINGLE   ?= 1h

.PHONY: all build man test unit fuzz lint demo bench soak soak-single clean install deb

all: build

# Stripped (-s -w: Go keeps what a panic's stack trace needs) and position-independent.
build:
	$(GO) build -trimpath -buildmode=pie -ldflags '-s -w $(LDFLAGS)' -o $(BIN) ./cmd/logcompactd

# The man pages, from docs/*.md (go-md2man, a tool in go.mod): reproducible, no
# build date; the version is the binary's.
man:
	mkdir -p bin/man
	for p in logcompactd.8 logcompactd.yaml.5; do \
	  $(GO) tool go-md2man -in docs/$$p.md | sed 's/@VERSION@/$(VERSION)/' > bin/man/$$p || exit 1; \
	done

# Everything CI runs: formatting, vet, staticcheck, the race-enabled tests (some
# need root: under CI=true they fail rather than skip), and a brief run of every fuzzer.
test: lint unit fuzz

unit:
	$(GO) test -race -count=1 -timeout 15m ./...

# Each fuzzer for $(FUZZTIME) executions, starting from its committed seed corpus (testdata/fuzz).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseSize$$' -fuzztime $(FUZZTIME) ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzParseDuration$$' -fuzztime $(FUZZTIME) ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzParseRate$$' -fuzztime $(FUZZTIME) ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzParseConfig$$' -fuzztime $(FUZZTIME) ./internal/config
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshalHistory$$' -fuzztime $(FUZZTIME) ./internal/growth
	$(GO) test -run '^$$' -fuzz '^FuzzUnmarshalSealedHistory$$' -fuzztime $(FUZZTIME) ./internal/growth
	$(GO) test -run '^$$' -fuzz '^FuzzJournalReplay$$' -fuzztime $(FUZZTIME) ./internal/fsx
	$(GO) test -run '^$$' -fuzz '^FuzzGlob$$' -fuzztime $(FUZZTIME) ./internal/model

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Builds, then runs the daemon for about a minute on a generated log directory
# with a synthetic writer (steady, burst, quiet). No root needed.
demo: build
	$(GO) build -o bin/demowriter ./scripts/demowriter
	./scripts/demo.sh

# Writers rotating both ways, the daemon merging and archiving (cold on a tmpfs)
# and killed -9 every 1-5 s, for $(SOAK); then the ledger check (TestSoak in
# cmd/logcompactd; root, for the tmpfs). `make test` runs it for one minute.
soak:
	LCD_SOAK=$(SOAK) $(GO) test -count=1 -run '^TestSoak$$' -v -timeout 0 ./cmd/logcompactd

# One daemon instance, no kills, for SINGLE (default 1h): every line exactly
# once, and the resident set at the end at most 1.2x what it was at a sixth.
soak-single:
	LCD_SINGLE=$(SINGLE) $(GO) test -count=1 -run '^TestSingleInstance$$' -v -timeout 0 ./cmd/logcompactd

# Benchmarks recorded in BENCHMARKS.md (regenerate with `make bench`).
bench:
	./scripts/bench.sh

# Installs the binary, the systemd unit (ExecStart pointing at PREFIX), the man
# pages, the license, the config (never over an existing one) and the state dir.
install: build man
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/logcompactd
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed 's|/usr/bin/logcompactd|$(PREFIX)/bin/logcompactd|g' packaging/systemd/logcompactd.service > $(DESTDIR)$(UNITDIR)/logcompactd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/logcompactd.service
	install -d -m 0755 $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man5
	gzip -9n < bin/man/logcompactd.8 > $(DESTDIR)$(PREFIX)/share/man/man8/logcompactd.8.gz
	gzip -9n < bin/man/logcompactd.yaml.5 > $(DESTDIR)$(PREFIX)/share/man/man5/logcompactd.yaml.5.gz
	chmod 0644 $(DESTDIR)$(PREFIX)/share/man/man8/logcompactd.8.gz $(DESTDIR)$(PREFIX)/share/man/man5/logcompactd.yaml.5.gz
	install -D -m 0644 packaging/debian/copyright $(DESTDIR)$(PREFIX)/share/doc/logcompactd/copyright
	install -d -m 0755 $(DESTDIR)/etc
	@if [ -e $(DESTDIR)/etc/logcompactd.yaml ]; then \
	  echo "keeping the existing $(DESTDIR)/etc/logcompactd.yaml"; \
	else install -m 0644 configs/logcompactd.yaml $(DESTDIR)/etc/logcompactd.yaml; fi
	install -d -m 0700 $(DESTDIR)/var/lib/logcompactd

# Builds dist/logcompactd_<version>_<arch>.deb with dpkg-deb: the config is a
# conffile, the unit is enabled with deb-systemd-helper in postinst.
deb:
	rm -rf $(DIST)/deb && mkdir -p $(DIST)/deb/DEBIAN
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(DIST))/deb PREFIX=/usr UNITDIR=/lib/systemd/system
	rmdir $(DIST)/deb/var/lib/logcompactd $(DIST)/deb/var/lib $(DIST)/deb/var 2>/dev/null || true
	v='$(DEB_VERSION)'; [ -n "$$v" ] || v=0.0.0+git$$(git rev-parse --short HEAD 2>/dev/null || echo 0); \
	  sed -e "s/@VERSION@/$$v/" -e "s/@ARCH@/$(DEB_ARCH)/" packaging/debian/control > $(DIST)/deb/DEBIAN/control
	install -m 0644 packaging/debian/conffiles $(DIST)/deb/DEBIAN/conffiles
	install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm $(DIST)/deb/DEBIAN/
	v='$(DEB_VERSION)'; [ -n "$$v" ] || v=0.0.0+git$$(git rev-parse --short HEAD 2>/dev/null || echo 0); \
	  sed -e "s/@VERSION@/$$v/" packaging/debian/changelog | gzip -9n > $(DIST)/deb/usr/share/doc/logcompactd/changelog.gz
	chmod 0644 $(DIST)/deb/usr/share/doc/logcompactd/changelog.gz
	dpkg-deb --root-owner-group --build $(DIST)/deb $(DIST)/
	@ls $(DIST)/*.deb

clean:
	rm -rf bin dist
