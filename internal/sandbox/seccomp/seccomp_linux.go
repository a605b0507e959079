// Package seccomp compiles an OCI runtime spec's seccomp profile with
// libseccomp (Debian's libseccomp, through libseccomp-golang) and loads it.
// It follows runc's semantics: argument conditions on distinct arguments
// are ANDed in one rule, several conditions on the same argument become one
// rule each (ORed); a syscall this libseccomp does not know is skipped;
// errnoRet is honoured (the default profile's clone3 → ENOSYS is what keeps
// glibc's thread creation working).
package seccomp

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

// Rule is one libseccomp rule: conditions ANDed.
type Rule struct {
	Syscall    string
	Action     specs.LinuxSeccompAction
	ErrnoRet   uint
	Conditions []specs.LinuxSeccompArg
}

// Rules expands a profile's syscall entries into libseccomp rules.
func Rules(p *specs.LinuxSeccomp) []Rule {
	var out []Rule
	for _, sc := range p.Syscalls {
		errno := uint(unix.EPERM)
		if sc.ErrnoRet != nil {
			errno = *sc.ErrnoRet
		}
		groups := [][]specs.LinuxSeccompArg{sc.Args}
		if sameArgTwice(sc.Args) {
			groups = nil
			for _, a := range sc.Args {
				groups = append(groups, []specs.LinuxSeccompArg{a})
			}
		}
		for _, name := range sc.Names {
			for _, g := range groups {
				out = append(out, Rule{Syscall: name, Action: sc.Action, ErrnoRet: errno, Conditions: g})
			}
		}
	}
	return out
}

func sameArgTwice(args []specs.LinuxSeccompArg) bool {
	seen := map[uint]bool{}
	for _, a := range args {
		if seen[a.Index] {
			return true
		}
		seen[a.Index] = true
	}
	return false
}

// Filter compiles p. The caller releases it.
func Filter(p *specs.LinuxSeccomp) (*libseccomp.ScmpFilter, error) {
	defErrno := uint(unix.EPERM)
	if p.DefaultErrnoRet != nil {
		defErrno = *p.DefaultErrnoRet
	}
	def, err := action(p.DefaultAction, defErrno)
	if err != nil {
		return nil, fmt.Errorf("default action: %w", err)
	}
	f, err := libseccomp.NewFilter(def)
	if err != nil {
		return nil, fmt.Errorf("new filter: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Release()
		}
	}()
	for _, a := range p.Architectures {
		arch, err := libseccomp.GetArchFromString(strings.TrimPrefix(strings.ToLower(string(a)), "scmp_arch_"))
		if err != nil {
			return nil, fmt.Errorf("architecture %s: %w", a, err)
		}
		if err := f.AddArch(arch); err != nil {
			return nil, fmt.Errorf("architecture %s: %w", a, err)
		}
	}
	// The runtime sets no_new_privs itself when the spec asks.
	if err := f.SetNoNewPrivsBit(false); err != nil {
		return nil, err
	}
	for _, r := range Rules(p) {
		call, err := libseccomp.GetSyscallFromName(r.Syscall)
		if err != nil {
			continue // not a syscall of this architecture or libseccomp
		}
		act, err := action(r.Action, r.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("syscall %s: %w", r.Syscall, err)
		}
		if act == def {
			continue // libseccomp refuses rules equal to the default action
		}
		if len(r.Conditions) == 0 {
			err = f.AddRule(call, act)
		} else {
			conds := make([]libseccomp.ScmpCondition, 0, len(r.Conditions))
			for _, a := range r.Conditions {
				c, cerr := condition(a)
				if cerr != nil {
					return nil, fmt.Errorf("syscall %s: %w", r.Syscall, cerr)
				}
				conds = append(conds, c)
			}
			err = f.AddRuleConditional(call, act, conds)
		}
		if err != nil {
			return nil, fmt.Errorf("syscall %s: add rule: %w", r.Syscall, err)
		}
	}
	ok = true
	return f, nil
}

// Load compiles p and installs it on the calling thread (which the caller
// keeps locked until exec).
func Load(p *specs.LinuxSeccomp) error {
	if p == nil {
		return nil
	}
	f, err := Filter(p)
	if err != nil {
		return err
	}
	defer f.Release()
	if err := f.Load(); err != nil {
		return fmt.Errorf("load filter: %w", err)
	}
	return nil
}

func action(a specs.LinuxSeccompAction, errno uint) (libseccomp.ScmpAction, error) {
	switch a {
	case specs.ActKill, specs.ActKillThread:
		return libseccomp.ActKillThread, nil
	case specs.ActKillProcess:
		return libseccomp.ActKillProcess, nil
	case specs.ActTrap:
		return libseccomp.ActTrap, nil
	case specs.ActErrno:
		return libseccomp.ActErrno.SetReturnCode(int16(errno)), nil
	case specs.ActTrace:
		return libseccomp.ActTrace.SetReturnCode(int16(errno)), nil
	case specs.ActAllow:
		return libseccomp.ActAllow, nil
	case specs.ActLog:
		return libseccomp.ActLog, nil
	default:
		return libseccomp.ActInvalid, fmt.Errorf("action %q is not supported", a)
	}
}

func condition(a specs.LinuxSeccompArg) (libseccomp.ScmpCondition, error) {
	ops := map[specs.LinuxSeccompOperator]libseccomp.ScmpCompareOp{
		specs.OpNotEqual: libseccomp.CompareNotEqual, specs.OpLessThan: libseccomp.CompareLess,
		specs.OpLessEqual: libseccomp.CompareLessOrEqual, specs.OpEqualTo: libseccomp.CompareEqual,
		specs.OpGreaterEqual: libseccomp.CompareGreaterEqual, specs.OpGreaterThan: libseccomp.CompareGreater,
		specs.OpMaskedEqual: libseccomp.CompareMaskedEqual,
	}
	op, ok := ops[a.Op]
	if !ok {
		return libseccomp.ScmpCondition{}, fmt.Errorf("operator %q is not supported", a.Op)
	}
	if a.Op == specs.OpMaskedEqual {
		return libseccomp.MakeCondition(a.Index, op, a.Value, a.ValueTwo)
	}
	return libseccomp.MakeCondition(a.Index, op, a.Value)
}

// Compile generates the BPF program of p as libseccomp would load it (the
// slow part of loading a large profile, done once per profile and cached by
// the caller; sandbox.LoadBPF installs it).
func Compile(p *specs.LinuxSeccomp) ([]byte, error) {
	f, err := Filter(p)
	if err != nil {
		return nil, err
	}
	defer f.Release()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	type result struct {
		b   []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, err := io.ReadAll(r)
		ch <- result{b, err}
	}()
	err = f.ExportBPF(w)
	w.Close()
	res := <-ch
	if err != nil {
		return nil, fmt.Errorf("export BPF: %w", err)
	}
	return res.b, res.err
}

// CompileMain is the init binary's `seccomp-compile` mode: a profile (JSON)
// on stdin, its BPF program on stdout.
func CompileMain() {
	var p specs.LinuxSeccomp
	if err := json.NewDecoder(os.Stdin).Decode(&p); err != nil {
		fmt.Fprintln(os.Stderr, "seccomp-compile: read profile:", err)
		os.Exit(1)
	}
	b, err := Compile(&p)
	if err != nil {
		fmt.Fprintln(os.Stderr, "seccomp-compile:", err)
		os.Exit(1)
	}
	if _, err := os.Stdout.Write(b); err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}
