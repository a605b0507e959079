// Command darwincheck checks, on any host, that the module builds for macOS
// (darwin/arm64), including code that uses github.com/Code-Hex/vz/v3, which
// needs cgo and Objective-C and so cannot be compiled off a Mac.
//
// Usage:
//
//	go run ./internal/tools/darwincheck [-v] [-tags list] [-overlay file] [-o dir] [-nobuild] [packages]
//
// It does two things for the packages matched (default ./...):
//
//  1. Type-checks them and everything they import from source, as the
//     darwin/arm64 build with CGO_ENABLED=1 sees them, with go/types and
//     FakeImportC. Calls into vz are checked against vz's real API; the C
//     side is not. Every error in the module's packages fails the check.
//  2. Cross-builds each main package of the module whose darwin import graph
//     has no cgo (GOOS=darwin GOARCH=arm64 CGO_ENABLED=0 go build). Main
//     packages that need cgo, such as those importing vz, are only
//     type-checked.
//
// The exit status is 0 when all is well, 1 when the darwin build has a
// problem, and 2 when the checks could not run.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
)

func main() {
	var opts options
	verbose := flag.Bool("v", false, "also list errors tolerated in cgo dependencies (FakeImportC artifacts)")
	flag.StringVar(&opts.Tags, "tags", "", "comma-separated build `tags` for the darwin build")
	flag.StringVar(&opts.Overlay, "overlay", "", "read a go build -overlay JSON `file` replacing or adding source files")
	flag.StringVar(&opts.OutDir, "o", "", "keep cross-built executables in `dir` (default: a temporary directory, removed)")
	flag.BoolVar(&opts.NoBuild, "nobuild", false, "type-check only; do not cross-build main packages")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: darwincheck [flags] [packages]\n\n"+
			"Type-checks packages for darwin/arm64 (cgo included, via FakeImportC) and\n"+
			"cross-builds their pure-Go main packages. Packages default to ./...\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	opts.Patterns = flag.Args()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintf(os.Stderr, "darwincheck: %v\n", err)
		os.Exit(2)
	}
	opts.Dir = wd
	r, err := check(ctx, opts)
	if err != nil {
		fmt.Fprintf(os.Stderr, "darwincheck: %v\n", err)
		os.Exit(2)
	}
	r.print(os.Stdout, wd, *verbose)
	if r.failed() {
		fmt.Fprintln(os.Stdout, "darwincheck: FAIL")
		os.Exit(1)
	}
}
