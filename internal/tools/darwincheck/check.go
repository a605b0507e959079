package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// options configures check.
type options struct {
	Dir      string   // directory the go commands run in; must be inside the module
	Patterns []string // package patterns, as for go list; none means ./...
	Tags     string   // extra build tags, comma-separated
	// Overlay is the path of a JSON file in the form go build -overlay reads
	// ({"Replace": {"file.go": "replacement.go", ...}}). It replaces or adds
	// source files for go list, the type checker and go build alike.
	Overlay string
	// OutDir receives the cross-built executables; when empty they go to a
	// temporary directory that is removed before check returns.
	OutDir string
	// NoBuild skips cross-building; main packages are only type-checked.
	NoBuild bool
}

// report is what check found.
type report struct {
	Check    *checkResult
	Packages []modulePackage   // the module's packages the patterns matched
	Binaries map[string]string // main import path -> executable; "" if its build failed
	// BinariesKept says whether Binaries outlive check (options.OutDir set).
	BinariesKept bool
	// BuildOutput is what go build printed and BuildErr its failure, if any.
	BuildOutput []byte
	BuildErr    error
	// Timings of the two stages, for the summary lines.
	TypeCheckTime, BuildTime time.Duration
}

// failed reports whether the darwin build of the module has a problem.
func (r *report) failed() bool { return len(r.Check.Errors) > 0 || r.BuildErr != nil }

// check lists the packages matched by opts.Patterns for darwin/arm64,
// type-checks them and everything they import, and cross-builds the pure-Go
// main packages among them. The error is non-nil only when the checks could
// not run (no go command, unreadable overlay, patterns matching nothing);
// problems in the code are in the report.
func check(ctx context.Context, opts options) (*report, error) {
	patterns := opts.Patterns
	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	var buildFlags []string
	if opts.Tags != "" {
		buildFlags = append(buildFlags, "-tags="+opts.Tags)
	}
	readFile := os.ReadFile
	if opts.Overlay != "" {
		replace, err := readOverlay(opts.Overlay, opts.Dir)
		if err != nil {
			return nil, err
		}
		readFile = func(path string) ([]byte, error) {
			if repl, ok := replace[path]; ok {
				return os.ReadFile(repl)
			}
			return os.ReadFile(path)
		}
		buildFlags = append(buildFlags, "-overlay="+opts.Overlay)
	}

	start := time.Now()
	pkgs, err := listPackages(ctx, opts.Dir, patterns, buildFlags)
	if err != nil {
		return nil, err
	}
	r := &report{Check: typeCheck(pkgs, readFile), Packages: modulePackages(pkgs)}
	r.TypeCheckTime = time.Since(start)

	var pureMains []string
	for _, m := range r.Packages {
		if m.IsMain && m.pureGo() {
			pureMains = append(pureMains, m.ImportPath)
		}
	}
	if opts.NoBuild || len(pureMains) == 0 {
		return r, nil
	}
	outDir := opts.OutDir
	if outDir == "" {
		tmp, err := os.MkdirTemp("", "darwincheck-")
		if err != nil {
			return nil, fmt.Errorf("create temporary directory for executables: %w", err)
		}
		defer os.RemoveAll(tmp)
		outDir = tmp
	}
	r.BinariesKept = opts.OutDir != ""
	start = time.Now()
	r.Binaries, r.BuildOutput, r.BuildErr = crossBuild(ctx, opts.Dir, outDir, buildFlags, pureMains)
	r.BuildTime = time.Since(start)
	return r, nil
}

// readOverlay reads a go build -overlay JSON file and returns its Replace
// map with relative paths made absolute against dir, where go runs.
func readOverlay(file, dir string) (map[string]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read overlay: %w", err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return nil, err
	}
	var ov struct{ Replace map[string]string }
	if err := json.Unmarshal(data, &ov); err != nil {
		return nil, fmt.Errorf("overlay %s: %w (want {\"Replace\": {\"file.go\": \"replacement.go\"}})", file, err)
	}
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	replace := make(map[string]string, len(ov.Replace))
	for from, to := range ov.Replace {
		replace[abs(from)] = abs(to)
	}
	return replace, nil
}

// print writes the report for a person: every error as file:line:col:
// message (file names relative to base when under it), then one line per
// package of the module saying what was done with it. With verbose, errors
// tolerated in cgo dependencies are listed too; otherwise only counted.
func (r *report) print(w io.Writer, base string, verbose bool) {
	rel := func(d Diagnostic) string {
		if d.Pos.IsValid() {
			if p, err := filepath.Rel(base, d.Pos.Filename); err == nil && !strings.HasPrefix(p, "..") {
				d.Pos.Filename = p
			}
		}
		return d.String()
	}
	c := r.Check
	fmt.Fprintf(w, "type-checked %d packages (%d of this module) for %s/%s with cgo (FakeImportC) [%.1fs]\n",
		c.Checked, c.InModule, targetGOOS, targetGOARCH, r.TypeCheckTime.Seconds())
	errCount := make(map[string]int)
	for _, d := range c.Errors {
		errCount[d.Pkg]++
		fmt.Fprintln(w, rel(d))
	}
	tolerated := make(map[string]int)
	for _, d := range c.Tolerated {
		tolerated[d.Pkg]++
		if verbose {
			fmt.Fprintf(w, "tolerated: %s\n", rel(d))
		}
	}
	for _, pkg := range slices.Sorted(maps.Keys(tolerated)) {
		fmt.Fprintf(w, "tolerated %d error(s) in cgo dependency %s: FakeImportC artifacts (-v lists them)\n", tolerated[pkg], pkg)
	}
	if len(r.BuildOutput) > 0 {
		w.Write(r.BuildOutput)
	}

	for _, m := range r.Packages {
		status, what := "ok  ", "type-checked"
		if n := errCount[m.ImportPath]; n > 0 {
			status, what = "FAIL", fmt.Sprintf("%d error(s)", n)
		}
		if m.IsMain {
			switch bin, tried := r.Binaries[m.ImportPath]; {
			case !m.pureGo():
				what += "; not cross-built: needs cgo via " + strings.Join(m.CgoVia, ", ") + " (build on macOS)"
			case !tried:
				what += "; cross-build skipped"
			case bin == "":
				status, what = "FAIL", what+"; cross-build failed (go build output above)"
			case r.BinariesKept:
				what += "; cross-built (CGO_ENABLED=0) to " + bin
			default:
				what += "; cross-built (CGO_ENABLED=0)"
			}
		}
		fmt.Fprintf(w, "%s %s: %s\n", status, m.ImportPath, what)
	}
	for _, pkg := range slices.Sorted(maps.Keys(errCount)) {
		if !slices.ContainsFunc(r.Packages, func(m modulePackage) bool { return m.ImportPath == pkg }) {
			fmt.Fprintf(w, "FAIL %s (dependency): %d error(s) in its darwin build\n", pkg, errCount[pkg])
		}
	}
	if r.BuildErr != nil {
		fmt.Fprintf(w, "cross-build: %v\n", r.BuildErr)
	} else if r.BuildTime > 0 {
		fmt.Fprintf(w, "cross-built for %s/%s [%.1fs]\n", targetGOOS, targetGOARCH, r.BuildTime.Seconds())
	}
}
