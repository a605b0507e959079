package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Target is the platform every check is made for. Save/restore and Rosetta
// exist only in vz's darwin && arm64 files, so arm64 is the superset.
const (
	targetGOOS   = "darwin"
	targetGOARCH = "arm64"
)

// listedPackage is the subset of `go list -json` output the checks use.
type listedPackage struct {
	Dir        string
	ImportPath string
	Name       string
	DepOnly    bool
	GoFiles    []string
	CgoFiles   []string
	Imports    []string
	ImportMap  map[string]string
	Deps       []string
	Module     *struct {
		Path      string
		Main      bool
		GoVersion string
	}
	Error *listError
}

// listError is a problem go list found in a package (DepsErrors are not
// read: every dependency's own Error is reported with that dependency).
type listError struct {
	Pos string // "file:line:col", "file:line" or ""
	Err string
}

// inModule reports whether p belongs to the main module (the code under check),
// as opposed to the standard library or a dependency.
func (p *listedPackage) inModule() bool { return p.Module != nil && p.Module.Main }

// usesCgo reports whether p itself has cgo files in the darwin build.
func (p *listedPackage) usesCgo() bool { return len(p.CgoFiles) > 0 }

// goEnv returns the environment for go commands targeting darwin/arm64 with
// the given cgo setting; it overrides any GOOS/GOARCH/CGO_ENABLED inherited
// from the caller.
func goEnv(cgo bool) []string {
	cgoVal := "0"
	if cgo {
		cgoVal = "1"
	}
	return append(os.Environ(), "GOOS="+targetGOOS, "GOARCH="+targetGOARCH, "CGO_ENABLED="+cgoVal)
}

// listPackages runs `go list -e -json -deps` in dir for the darwin/arm64 cgo
// build and returns the packages in dependency order (every package comes
// after all of its imports). buildFlags (-tags, -overlay) are passed through.
// It fails only when go list itself cannot run or matches nothing;
// per-package problems (missing imports, bad build constraints) are reported
// in the packages' Error fields.
func listPackages(ctx context.Context, dir string, patterns, buildFlags []string) ([]*listedPackage, error) {
	args := []string{"list", "-e", "-json=Dir,ImportPath,Name,DepOnly,GoFiles,CgoFiles,Imports,ImportMap,Deps,Module,Error", "-deps"}
	args = append(args, buildFlags...)
	args = append(args, "--")
	args = append(args, patterns...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = goEnv(true)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go list %s (GOOS=%s GOARCH=%s CGO_ENABLED=1) in %s: %w\n%s",
			strings.Join(patterns, " "), targetGOOS, targetGOARCH, dir, err, stderr.Bytes())
	}
	var pkgs []*listedPackage
	dec := json.NewDecoder(&stdout)
	for {
		p := new(listedPackage)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, fmt.Errorf("decode go list output: %w", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("go list %s matched no packages for %s/%s (%s)",
			strings.Join(patterns, " "), targetGOOS, targetGOARCH, strings.TrimSpace(stderr.String()))
	}
	return pkgs, nil
}
