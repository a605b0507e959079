# Included by the top-level Makefile. check-darwin type-checks every package
# for darwin/arm64, cgo and github.com/Code-Hex/vz/v3 included, and cross-builds
# the pure-Go darwin main packages (see internal/tools/darwincheck/main.go).
# It runs on any host; nothing is installed or left behind.
GO ?= go

.PHONY: check-darwin
check-darwin:
	$(GO) run ./internal/tools/darwincheck ./...
