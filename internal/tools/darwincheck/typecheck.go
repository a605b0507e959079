package main

import (
	"cmp"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/scanner"
	"go/token"
	"go/types"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Diagnostic is one problem in the darwin build of a package.
type Diagnostic struct {
	Pkg string         // import path of the package the problem is in
	Pos token.Position // may be invalid when go list gave no position
	Msg string
}

// String renders d as "file:line:col: message" (or "pkg: message" when there
// is no position), the form editors and CI logs link to.
func (d Diagnostic) String() string {
	if d.Pos.IsValid() {
		return fmt.Sprintf("%s: %s", d.Pos, d.Msg)
	}
	return fmt.Sprintf("%s: %s", d.Pkg, d.Msg)
}

// checkResult is the outcome of typeCheck.
type checkResult struct {
	// Errors break the darwin build: any problem in a package of the main
	// module, and any problem in a dependency without cgo files (FakeImportC
	// plays no part there, so the error is as real as on a Mac).
	Errors []Diagnostic
	// Tolerated are errors in dependencies (std or third party) that have cgo
	// files. Under FakeImportC every C.x is a guess, so errors in those
	// packages are expected artifacts. What calls from the module are checked
	// against is the exported API, which stays fully typed (for vz,
	// TestVzAPIFullyTyped holds that).
	Tolerated []Diagnostic
	// Checked counts the packages type-checked, and InModule those of them
	// in the main module.
	Checked, InModule int
	// Types holds every checked package by import path, complete or not.
	Types map[string]*types.Package
}

// typeCheck type-checks pkgs from source for darwin/arm64 with FakeImportC.
// pkgs must be closed under imports, as listPackages returns them. Packages of the main module are checked in full; all others
// without function bodies, which is enough to give their exported API and
// several times faster. Independent packages are checked in parallel.
// readFile reads a source file (it lets callers overlay unsaved contents).
func typeCheck(pkgs []*listedPackage, readFile func(string) ([]byte, error)) *checkResult {
	states := make(map[string]*checkState, len(pkgs))
	for _, p := range pkgs {
		states[p.ImportPath] = &checkState{done: make(chan struct{})}
	}
	var (
		fset  = token.NewFileSet()
		sizes = types.SizesFor("gc", targetGOARCH)
		sem   = make(chan struct{}, runtime.GOMAXPROCS(0))
		mu    sync.Mutex
		res   = new(checkResult)
		wg    sync.WaitGroup
	)
	report := func(p *listedPackage, d Diagnostic) {
		mu.Lock()
		defer mu.Unlock()
		if p.inModule() || !p.usesCgo() {
			res.Errors = append(res.Errors, d)
		} else {
			res.Tolerated = append(res.Tolerated, d)
		}
	}
	for _, p := range pkgs {
		st := states[p.ImportPath]
		if p.ImportPath == "unsafe" {
			st.types = types.Unsafe
			close(st.done)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(st.done)
			// A package go list found broken is reported, not checked, and
			// before waiting: go list puts import cycle errors on one member
			// of the cycle, so this is what keeps the waits acyclic.
			if p.Error != nil {
				report(p, listDiagnostic(p.ImportPath, p.Error))
				return
			}
			for _, imp := range p.Imports {
				if dep := states[imp]; dep != nil {
					<-dep.done
				}
			}
			sem <- struct{}{}
			defer func() { <-sem }()

			files, parseErrs := parseFiles(fset, p, readFile)
			for _, d := range parseErrs {
				report(p, d)
			}
			cfg := &types.Config{
				Importer:         importerFunc(func(path string) (*types.Package, error) { return importFor(p, path, states) }),
				FakeImportC:      true,
				IgnoreFuncBodies: !p.inModule(),
				Sizes:            sizes,
				Error: func(err error) {
					var te types.Error
					if errors.As(err, &te) {
						report(p, Diagnostic{Pkg: p.ImportPath, Pos: te.Fset.Position(te.Pos), Msg: te.Msg})
					} else {
						report(p, Diagnostic{Pkg: p.ImportPath, Msg: err.Error()})
					}
				},
			}
			if p.Module != nil && p.Module.GoVersion != "" {
				cfg.GoVersion = "go" + p.Module.GoVersion
			}
			// Check never returns a nil package; with errors it is incomplete
			// but still usable for importers (missing objects are invalid,
			// which go/types reports once and does not cascade).
			st.types, _ = cfg.Check(p.ImportPath, fset, files, nil)
			mu.Lock()
			res.Checked++
			if p.inModule() {
				res.InModule++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	// Packages finish in any order; report in a stable one.
	slices.SortFunc(res.Errors, compareDiagnostics)
	slices.SortFunc(res.Tolerated, compareDiagnostics)
	res.Types = make(map[string]*types.Package, len(states))
	for path, st := range states {
		if st.types != nil {
			res.Types[path] = st.types
		}
	}
	return res
}

// compareDiagnostics orders diagnostics by package, then position.
func compareDiagnostics(a, b Diagnostic) int {
	return cmp.Or(
		cmp.Compare(a.Pkg, b.Pkg),
		cmp.Compare(a.Pos.Filename, b.Pos.Filename),
		cmp.Compare(a.Pos.Line, b.Pos.Line),
		cmp.Compare(a.Pos.Column, b.Pos.Column),
		cmp.Compare(a.Msg, b.Msg),
	)
}

// checkState is one package's progress through typeCheck: types is set
// before done is closed, and is nil if the package could not be checked.
type checkState struct {
	done  chan struct{}
	types *types.Package
}

// importFor resolves an import written in p's source (through p's ImportMap,
// which maps vendored and replaced paths) to the already-checked package.
// typeCheck guarantees every import of p finished before p is checked.
func importFor(p *listedPackage, path string, states map[string]*checkState) (*types.Package, error) {
	if resolved, ok := p.ImportMap[path]; ok {
		path = resolved
	}
	st := states[path]
	if st == nil {
		return nil, fmt.Errorf("package %s is not in the go list output for %s", path, p.ImportPath)
	}
	if st.types == nil {
		return nil, fmt.Errorf("package %s has errors (reported above)", path)
	}
	return st.types, nil
}

// listDiagnostic converts an error go list reported for package pkg.
func listDiagnostic(pkg string, e *listError) Diagnostic {
	d := Diagnostic{Pkg: pkg, Msg: e.Err}
	// Pos is "file:line:col" or "file:line"; split from the right so that a
	// file name containing ':' survives.
	rest := e.Pos
	var nums []int
	for len(nums) < 2 {
		i := strings.LastIndexByte(rest, ':')
		n, err := strconv.Atoi(rest[i+1:])
		if i < 0 || err != nil {
			break
		}
		nums = append([]int{n}, nums...)
		rest = rest[:i]
	}
	if len(nums) > 0 && rest != "" {
		d.Pos = token.Position{Filename: rest, Line: nums[0]}
		if len(nums) > 1 {
			d.Pos.Column = nums[1]
		}
	}
	return d
}

type importerFunc func(path string) (*types.Package, error)

func (f importerFunc) Import(path string) (*types.Package, error) { return f(path) }

// parseFiles parses p's Go and cgo files. Files of the main module keep their
// comments; the rest skip object resolution, which go/types does not need.
func parseFiles(fset *token.FileSet, p *listedPackage, readFile func(string) ([]byte, error)) ([]*ast.File, []Diagnostic) {
	mode := parser.SkipObjectResolution
	if p.inModule() {
		mode |= parser.ParseComments
	}
	var (
		files []*ast.File
		diags []Diagnostic
	)
	for _, name := range append(append([]string(nil), p.GoFiles...), p.CgoFiles...) {
		path := filepath.Join(p.Dir, name)
		src, err := readFile(path)
		if err != nil {
			diags = append(diags, Diagnostic{Pkg: p.ImportPath, Msg: err.Error()})
			continue
		}
		f, err := parser.ParseFile(fset, path, src, mode)
		var list scanner.ErrorList
		if errors.As(err, &list) {
			for _, e := range list {
				diags = append(diags, Diagnostic{Pkg: p.ImportPath, Pos: e.Pos, Msg: e.Msg})
			}
		} else if err != nil {
			diags = append(diags, Diagnostic{Pkg: p.ImportPath, Msg: err.Error()})
		}
		if f != nil {
			files = append(files, f)
		}
	}
	return files, diags
}
