# Berth. Quick start on a fresh Debian machine, as root:
#   make demo    # build, start the daemon, show it working, stop it
#   make test    # install what the tests need, then run them all
GO      ?= go
BIN     := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X github.com/berth-dev/berth/internal/version.Version=$(VERSION) -X github.com/berth-dev/berth/internal/version.Commit=$(COMMIT)
PLUGINS := $(notdir $(wildcard plugins/*))
TEST_FLAGS ?=

.PHONY: all build deps test test-short demo demo-image proto check-proto lint clean
all: build

build:
	@mkdir -p $(BIN)/plugins
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/berth ./core/cmd/berth
	$(GO) build -tags netgo,osusergo -ldflags '-s -w -linkmode external -extldflags "-static"' -o $(BIN)/berth-sandbox-init ./cmd/berth-sandbox-init
	$(MAKE) --no-print-directory $(BIN)/berth-sandbox-init-arm64
	CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/berth-vm-agent ./plugins/isolation-vm/guest
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/berth-vm-agent-arm64 ./plugins/isolation-vm/guest
	@for p in $(PLUGINS); do \
		echo "$(GO) build -o $(BIN)/plugins/$$p ./plugins/$$p"; \
		$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/plugins/$$p ./plugins/$$p || exit 1; \
	done
	@# The VM supervisor (isolation-vm supervise) owns its Virtualization.framework VM: it needs the entitlement.
	@if [ "$$(uname -s)" = Darwin ]; then codesign --force --entitlements plugins/isolation-vm/vm.entitlements -s - $(BIN)/plugins/isolation-vm; fi

# The arm64 guest's (Virtualization.framework, qemu-system-aarch64) sandbox init:
# cgo + static libseccomp, cross-built with Debian's gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross and libseccomp-dev:arm64 (scripts/install-deps.sh).
# Skipped with a message where that cross toolchain is missing (macOS).
.PHONY: $(BIN)/berth-sandbox-init-arm64
$(BIN)/berth-sandbox-init-arm64:
	@if [ "$$(uname -s)" = Linux ] && command -v aarch64-linux-gnu-gcc >/dev/null; then \
		echo "build $@"; \
		CGO_ENABLED=1 GOOS=linux GOARCH=arm64 CC=aarch64-linux-gnu-gcc PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig \
		$(GO) build -tags netgo,osusergo -ldflags '-s -w -linkmode external -extldflags "-static"' -o $@ ./cmd/berth-sandbox-init; \
	else echo "skip $@: no aarch64-linux-gnu-gcc (Linux: make deps)"; fi

# System packages the project needs (protoc, …), installed by its own script.
deps:
	./scripts/install-deps.sh

# The whole suite, privileged tests included (run as root).
test: deps build
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 30m $(TEST_FLAGS) ./...
	$(GO) test -run '^$$' -fuzz '^FuzzApply$$' -fuzztime 10s ./sdk/archive

test-short: build
	$(GO) test -short -count=1 ./...

# demo shows the daemon, its plugins and the image store at work; it builds
# and imports the demo image (scripts/demo-image.sh) on the way.
demo: build
	./scripts/demo.sh

# The demo image, berth.local/demo:latest: Debian's static busybox and a
# tiny static Go program, built here with no registry and imported through
# `berth image import` (the daemon is started for it when none runs).
demo-image: build
	./scripts/demo-image.sh

# Regenerate sdk/internal/gen from sdk/proto, with the REST gateway and its
# OpenAPI document (sdk/api/openapi.swagger.json; HTTP rules in
# sdk/proto/gateway.yaml); the result is committed and check-proto proves it
# is reproduced byte for byte.
proto:
	./scripts/genproto.sh

check-proto: proto
	git diff --exit-code -- sdk/internal/gen sdk/api/openapi.swagger.json internal/vmagent/agentpb
	@test -z "$$(git status --porcelain -- sdk/internal/gen sdk/api/openapi.swagger.json internal/vmagent/agentpb)" || { echo "untracked generated files"; exit 1; }

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff

clean:
	rm -rf $(BIN) .cache

include internal/tools/darwincheck/check-darwin.mk
include bench/bench.mk
bench: build
