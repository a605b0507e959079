package main

import (
	"context"
	"debug/macho"
	"encoding/json"
	"go/token"
	"go/types"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// vzCallHeader starts every overlay fixture of TestTypeCheckVzCalls; the
// case's body is line vzCallLine. The function's parameters put typical vz
// values in scope.
const (
	vzCallHeader = `package main

import "github.com/Code-Hex/vz/v3"

func main() {}

func use(cfg *vz.VirtualMachineConfiguration, vm *vz.VirtualMachine, dev *vz.VirtioSocketDevice, boot *vz.LinuxBootLoader) {
`
	vzCallLine = 8
)

// writeOverlay writes each file (absolute path -> contents) under dir and
// returns a go build -overlay JSON file that adds them at their paths.
func writeOverlay(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	replace := make(map[string]string)
	for path, src := range files {
		repl := filepath.Join(dir, strings.NewReplacer("/", "_", ":", "_").Replace(path))
		if err := os.WriteFile(repl, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		replace[path] = repl
	}
	data, err := json.Marshal(map[string]any{"Replace": replace})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func absTestdata(t *testing.T, elem ...string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(append([]string{"testdata"}, elem...)...))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTypeCheckVzCalls proves the darwin type check catches wrong calls into
// vz (and ordinary errors) in the module's code, and accepts correct ones.
// Each case is its own package, added by overlay under testdata/overlay/, so
// one check covers them all.
func TestTypeCheckVzCalls(t *testing.T) {
	tests := []struct {
		name string
		body string // one line of Go inside use
		want string // substring of the only error expected on that line; "" for none
	}{
		{"correct calls", `_, _ = vz.NewVirtualMachine(cfg); _, _ = dev.Connect(1024); _ = vm.Start(); _, _ = vz.NewVirtualMachineConfiguration(boot, 2, 1<<30)`, ""},
		{"arm64-only API", `_ = vm.SaveMachineStateToPath("vm.state")`, ""},
		{"too many arguments", `_, _ = vz.NewVirtualMachine(cfg, 2)`, "too many arguments in call to vz.NewVirtualMachine"},
		{"not enough arguments", `_, _ = vz.NewVirtualMachineConfiguration(boot, 2)`, "not enough arguments in call to vz.NewVirtualMachineConfiguration"},
		{"wrong argument type", `_, _ = vz.NewVirtualMachine(boot)`, "cannot use boot (variable of type *vz.LinuxBootLoader) as *vz.VirtualMachineConfiguration value in argument to vz.NewVirtualMachine"},
		{"wrong port type", `_, _ = dev.Connect("1024")`, `cannot use "1024" (untyped string constant) as uint32 value in argument to dev.Connect`},
		{"method does not exist", `_ = vm.Launch()`, "vm.Launch undefined (type *vz.VirtualMachine has no field or method Launch)"},
		{"result count", `m := vz.NewVirtualMachine(cfg); _ = m`, "assignment mismatch: 1 variable but vz.NewVirtualMachine returns 2 values"},
		{"unexported name", `_ = vz.newVirtioSocketDevice`, "name newVirtioSocketDevice not exported by package vz"},
		{"error outside vz", `x := vm`, "declared and not used: x"},
	}
	const modulePath = "github.com/berth-dev/berth/internal/tools/darwincheck/testdata/"
	files := make(map[string]string)
	patterns := []string{"./testdata/vzuser"} // the checked-in, complete, correct fixture
	caseDir := func(name string) string { return "overlay/" + strings.ReplaceAll(name, " ", "_") }
	for _, tt := range tests {
		files[absTestdata(t, caseDir(tt.name), "use_darwin.go")] = vzCallHeader + "\t" + tt.body + "\n}\n"
		patterns = append(patterns, "./testdata/"+caseDir(tt.name))
	}
	r, err := check(context.Background(), options{
		Dir:      ".",
		Patterns: patterns,
		Overlay:  writeOverlay(t, t.TempDir(), files),
		NoBuild:  true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !r.failed() {
		t.Error("report.failed() = false with wrong calls in the module; want true")
	}
	errsIn := func(pkg string) []Diagnostic {
		var ds []Diagnostic
		for _, d := range r.Check.Errors {
			if d.Pkg == pkg {
				ds = append(ds, d)
			}
		}
		return ds
	}

	t.Run("checked-in fixture", func(t *testing.T) {
		if ds := errsIn(modulePath + "vzuser"); len(ds) > 0 {
			t.Errorf("testdata/vzuser is correct vz v3.7.1 code but got errors: %v", ds)
		}
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds := errsIn(modulePath + caseDir(tt.name))
			if tt.want == "" {
				if len(ds) > 0 {
					t.Errorf("got errors %v; want none", ds)
				}
				return
			}
			if len(ds) != 1 {
				t.Fatalf("got %d errors %v; want one containing %q", len(ds), ds, tt.want)
			}
			file := absTestdata(t, caseDir(tt.name), "use_darwin.go")
			// file:line:col: message, with the column somewhere on the line.
			re := regexp.MustCompile("^" + regexp.QuoteMeta(file) + ":8:[0-9]+: ")
			if got := ds[0].String(); !re.MatchString(got) || !strings.Contains(got, tt.want) {
				t.Errorf("got %q; want %s:%d:<col>: ...%s...", got, file, vzCallLine, tt.want)
			}
		})
	}
	if len(r.Check.Tolerated) > 0 {
		t.Logf("tolerated in cgo dependencies: %v", r.Check.Tolerated)
	}
}

// TestVzAPIFullyTyped guards the tolerance of errors in cgo dependencies:
// under FakeImportC an exported vz declaration whose type involves C would
// become invalid, and go/types then accepts any use of it silently. Every
// exported function, variable, method and struct field of vz must have a
// valid type for calls into vz to be checked at all.
func TestVzAPIFullyTyped(t *testing.T) {
	r, err := check(context.Background(), options{Dir: ".", Patterns: []string{"./testdata/vzuser"}, NoBuild: true})
	if err != nil {
		t.Fatal(err)
	}
	const vzPath = "github.com/Code-Hex/vz/v3"
	pkg := r.Check.Types[vzPath]
	if pkg == nil {
		t.Fatalf("%s was not type-checked", vzPath)
	}
	invalid := func(what string, typ types.Type) {
		if s := types.TypeString(typ, nil); strings.Contains(s, "invalid type") {
			t.Errorf("%s has an invalid type: %s", what, s)
		}
	}
	var n int
	for _, name := range pkg.Scope().Names() {
		obj := pkg.Scope().Lookup(name)
		if !obj.Exported() {
			continue
		}
		n++
		tn, ok := obj.(*types.TypeName)
		if !ok {
			invalid("vz."+name, obj.Type())
			continue
		}
		named, ok := tn.Type().(*types.Named)
		if !ok {
			invalid("vz."+name, tn.Type().Underlying())
			continue
		}
		for m := range named.Methods() {
			if m.Exported() {
				invalid("vz."+name+"."+m.Name(), m.Type())
			}
		}
		if st, ok := named.Underlying().(*types.Struct); ok {
			for f := range st.Fields() {
				if f.Exported() {
					invalid("vz."+name+"."+f.Name(), f.Type())
				}
			}
		}
	}
	if n < 100 {
		t.Errorf("vz has %d exported names; want the full API (hundreds)", n)
	}
}

// TestCrossBuild checks that pure-Go main packages are cross-built for
// darwin/arm64 and that mains importing vz are only type-checked.
func TestCrossBuild(t *testing.T) {
	out := t.TempDir()
	r, err := check(context.Background(), options{
		Dir:      ".",
		Patterns: []string{"./testdata/vzuser", "./testdata/puremain"},
		OutDir:   out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if r.failed() {
		var b strings.Builder
		r.print(&b, ".", true)
		t.Fatalf("check failed:\n%s", b.String())
	}
	want := map[string]bool{ // import path suffix -> cross-built
		"testdata/vzuser":   false,
		"testdata/puremain": true,
	}
	for _, m := range r.Packages {
		suffix := m.ImportPath[strings.Index(m.ImportPath, "testdata/"):]
		built, ok := want[suffix]
		if !ok {
			t.Errorf("unexpected package %s", m.ImportPath)
			continue
		}
		delete(want, suffix)
		if !m.IsMain {
			t.Errorf("%s: IsMain = false", m.ImportPath)
		}
		if m.pureGo() != built {
			t.Errorf("%s: pureGo() = %v (cgo via %v); want %v", m.ImportPath, m.pureGo(), m.CgoVia, built)
		}
		bin, tried := r.Binaries[m.ImportPath]
		if tried != built {
			t.Errorf("%s: cross-built = %v; want %v", m.ImportPath, tried, built)
		}
		if !built {
			continue
		}
		f, err := macho.Open(bin)
		if err != nil {
			t.Fatalf("%s: %v", m.ImportPath, err)
		}
		f.Close()
		if f.Cpu != macho.CpuArm64 || f.Type != macho.TypeExec {
			t.Errorf("%s: %s is a Mach-O %v %v; want an arm64 executable", m.ImportPath, bin, f.Cpu, f.Type)
		}
	}
	for suffix := range want {
		t.Errorf("package %s not reported", suffix)
	}
}

// TestCommandExitStatus runs the command itself: exit 1 with the error as
// file:line:col on a wrong vz call, exit 0 on correct code.
func TestCommandExitStatus(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the command")
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "darwincheck")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	target := absTestdata(t, "vzuser", "vm_darwin.go")
	src, err := os.ReadFile(target)
	if err != nil {
		t.Fatal(err)
	}
	good := string(src)
	bad := strings.Replace(good, "vz.NewVirtualMachine(cfg)", "vz.NewVirtualMachine(cfg, 2)", 1)
	if bad == good {
		t.Fatal("fixture no longer calls vz.NewVirtualMachine(cfg)")
	}
	badPos := token.Position{Filename: "testdata/vzuser/vm_darwin.go", Line: 1 + strings.Count(good[:strings.Index(good, "vz.NewVirtualMachine(cfg)")], "\n")}

	tests := []struct {
		name     string
		src      string
		wantCode int
		wantOut  string
	}{
		{"correct", good, 0, "ok   github.com/berth-dev/berth/internal/tools/darwincheck/testdata/vzuser: type-checked; not cross-built"},
		{"wrong call", bad, 1, badPos.String() + ":"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			overlay := writeOverlay(t, t.TempDir(), map[string]string{target: tt.src})
			cmd := exec.Command(bin, "-nobuild", "-overlay", overlay, "./testdata/vzuser")
			out, err := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code != tt.wantCode {
				t.Errorf("exit code %d (%v); want %d; output:\n%s", code, err, tt.wantCode, out)
			}
			if !strings.Contains(string(out), tt.wantOut) {
				t.Errorf("output does not contain %q:\n%s", tt.wantOut, out)
			}
		})
	}
}

func TestListDiagnosticPosition(t *testing.T) {
	tests := []struct {
		pos  string
		want token.Position
	}{
		{"/src/a.go:3:7", token.Position{Filename: "/src/a.go", Line: 3, Column: 7}},
		{"a.go:3", token.Position{Filename: "a.go", Line: 3}},
		{"c:/x/a.go:3:7", token.Position{Filename: "c:/x/a.go", Line: 3, Column: 7}},
		{"", token.Position{}},
		{"a.go", token.Position{}},
	}
	for _, tt := range tests {
		if got := listDiagnostic("p", &listError{Pos: tt.pos, Err: "boom"}).Pos; got != tt.want {
			t.Errorf("listDiagnostic(Pos %q).Pos = %+v; want %+v", tt.pos, got, tt.want)
		}
	}
}

func TestExecName(t *testing.T) {
	tests := []struct{ importPath, want string }{
		{"github.com/berth-dev/berth/cmd/berth", "berth"},
		{"example.com/tool/v2", "tool"},
		{"example.com/tool/v1", "v1"},
		{"example.com/tool/v0", "v0"},
		{"example.com/tool/v2x", "v2x"},
		{"v2", "v2"},
	}
	for _, tt := range tests {
		if got := execName(tt.importPath); got != tt.want {
			t.Errorf("execName(%q) = %q; want %q", tt.importPath, got, tt.want)
		}
	}
}
