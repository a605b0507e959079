//go:build tools

// Package tools records dependencies the module needs before any code
// imports them; it is never built (the tools tag is never set).
//
// github.com/Code-Hex/vz/v3 is the macOS hypervisor binding the darwin
// isolation plugin will use, and internal/tools/darwincheck type-checks
// darwin code against it. Until real darwin code imports vz, this blank
// import keeps `go mod tidy` (which reads files under every build tag) from
// dropping it from go.mod and go.sum. Delete it once a darwin package
// imports vz.
package tools

import _ "github.com/Code-Hex/vz/v3"
