package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// modulePackage is a package of the main module that the patterns matched.
type modulePackage struct {
	ImportPath string
	IsMain     bool
	// CgoVia lists the packages in its darwin import graph (itself included)
	// that have cgo files, runtime/cgo aside: std (net, os/user) and
	// libraries such as purego import it when cgo is on but have pure-Go
	// builds without it. Empty means pure Go, so a main package cross-builds
	// with CGO_ENABLED=0 (and a dependency that really needs cgo fails that
	// build, which the check reports).
	CgoVia []string
}

// pureGo reports whether m's darwin build needs no cgo.
func (m modulePackage) pureGo() bool { return len(m.CgoVia) == 0 }

// modulePackages returns the packages of the main module that the patterns
// matched, sorted by import path. pkgs must be closed under imports.
func modulePackages(pkgs []*listedPackage) []modulePackage {
	byPath := make(map[string]*listedPackage, len(pkgs))
	for _, p := range pkgs {
		byPath[p.ImportPath] = p
	}
	var mods []modulePackage
	for _, p := range pkgs {
		if !p.inModule() || p.DepOnly {
			continue
		}
		m := modulePackage{ImportPath: p.ImportPath, IsMain: p.Name == "main"}
		for _, path := range append([]string{p.ImportPath}, p.Deps...) {
			if q := byPath[path]; q != nil && q.usesCgo() && path != "runtime/cgo" {
				m.CgoVia = append(m.CgoVia, path)
			}
		}
		mods = append(mods, m)
	}
	slices.SortFunc(mods, func(a, b modulePackage) int { return strings.Compare(a.ImportPath, b.ImportPath) })
	return mods
}

// crossBuild builds the given main packages for darwin/arm64 with
// CGO_ENABLED=0 into outDir, and returns each package's executable path, ""
// for those that failed. The packages are built by as few `go build`
// invocations as their executable names allow (go build -o dir/ needs the
// names to differ), so shared dependencies compile once. buildFlags (-tags,
// -overlay) are passed through. output holds what go build printed; err is
// non-nil if any build failed.
func crossBuild(ctx context.Context, dir, outDir string, buildFlags, importPaths []string) (binaries map[string]string, output []byte, err error) {
	// batches[i] holds at most one package per executable name.
	var batches [][]string
	for _, ip := range importPaths {
		placed := false
		for i, b := range batches {
			if !slices.ContainsFunc(b, func(other string) bool { return execName(other) == execName(ip) }) {
				batches[i] = append(b, ip)
				placed = true
				break
			}
		}
		if !placed {
			batches = append(batches, []string{ip})
		}
	}
	binaries = make(map[string]string, len(importPaths))
	var out bytes.Buffer
	for i, batch := range batches {
		bdir := filepath.Join(outDir, strconv.Itoa(i))
		if err := os.MkdirAll(bdir, 0o755); err != nil {
			return nil, nil, fmt.Errorf("create build output directory: %w", err)
		}
		args := []string{"build", "-o", bdir + string(filepath.Separator)}
		args = append(args, buildFlags...)
		args = append(args, "--")
		args = append(args, batch...)
		cmd := exec.CommandContext(ctx, "go", args...)
		cmd.Dir = dir
		cmd.Env = goEnv(false)
		cmd.Stdout, cmd.Stderr = &out, &out
		if runErr := cmd.Run(); runErr != nil && err == nil {
			err = fmt.Errorf("go build (GOOS=%s GOARCH=%s CGO_ENABLED=0): %w", targetGOOS, targetGOARCH, runErr)
		}
		// go build keeps going past a failed package, so check each binary.
		for _, ip := range batch {
			bin := filepath.Join(bdir, execName(ip))
			if _, statErr := os.Stat(bin); statErr == nil {
				binaries[ip] = bin
				continue
			}
			binaries[ip] = ""
			if err == nil {
				err = fmt.Errorf("go build reported success but wrote no %s for %s", bin, ip)
			}
		}
	}
	return binaries, out.Bytes(), err
}

// execName is the file name `go build -o dir/` gives the executable of the
// main package importPath (mirrors cmd/go: example.com/cmd/v2 becomes cmd).
func execName(importPath string) string {
	elem := path.Base(importPath)
	if elem != importPath && isMajorVersion(elem) {
		elem = path.Base(path.Dir(importPath))
	}
	return elem
}

// isMajorVersion reports whether elem is a module major-version suffix
// such as v2 (v0 and v1 are not).
func isMajorVersion(elem string) bool {
	if len(elem) < 2 || elem[0] != 'v' || elem[1] == '0' || elem == "v1" {
		return false
	}
	for _, c := range elem[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
