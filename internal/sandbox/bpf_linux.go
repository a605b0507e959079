package sandbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// LoadBPF installs a seccomp BPF program (struct sock_filter array in host
// byte order, as libseccomp exports it) on every thread of the caller.
func LoadBPF(prog []byte) error {
	if len(prog) == 0 || len(prog)%8 != 0 || len(prog)/8 > 4096 {
		return fmt.Errorf("seccomp program of %d bytes is not 1-4096 instructions", len(prog))
	}
	filters := make([]unix.SockFilter, len(prog)/8)
	if err := binary.Read(bytes.NewReader(prog), binary.NativeEndian, filters); err != nil {
		return err
	}
	fprog := unix.SockFprog{Len: uint16(len(filters)), Filter: &filters[0]}
	const setModeFilter, flagTsync = 1, 1
	if _, _, e := unix.Syscall(unix.SYS_SECCOMP, setModeFilter, flagTsync, uintptr(unsafe.Pointer(&fprog))); e != 0 {
		return os.NewSyscallError("seccomp", e)
	}
	return nil
}

// seccompBPF returns filter compiled by the init binary, from the cache dir
// when it was compiled before (generating a large profile's program takes
// tens of milliseconds; loading it, none). Without a cache dir it returns
// nil and the init compiles the profile itself.
func (l *Launcher) seccompBPF(filter *specs.LinuxSeccomp) ([]byte, error) {
	if filter == nil {
		return nil, nil
	}
	profile, err := json.Marshal(filter)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(profile)
	h.Write([]byte(l.identity))
	key := hex.EncodeToString(h.Sum(nil))
	l.memoMu.Lock()
	b, ok := l.memo[key]
	l.memoMu.Unlock()
	if ok {
		return b, nil
	}
	if l.SeccompCacheDir == "" {
		return nil, nil
	}
	path := filepath.Join(l.SeccompCacheDir, key+".bpf")
	if b, err := os.ReadFile(path); err == nil {
		return b, nil
	}
	cmd := exec.Command(l.path(), "seccomp-compile")
	cmd.Stdin = bytes.NewReader(profile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.ExtraFiles = nil
	b, err = cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("compile the seccomp profile: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	if len(b) == 0 {
		return nil, errors.New("compile the seccomp profile: empty program")
	}
	if err := os.MkdirAll(l.SeccompCacheDir, 0o700); err == nil {
		tmp, err := os.CreateTemp(l.SeccompCacheDir, ".bpf-*")
		if err == nil {
			_, werr := tmp.Write(b)
			cerr := tmp.Close()
			if werr == nil && cerr == nil {
				_ = os.Rename(tmp.Name(), path)
			}
			_ = os.Remove(tmp.Name())
		}
	}
	return b, nil
}

// Precompile compiles filter with the init binary and keeps the program in
// memory, so every later Create or Exec with the same profile hands it to
// the init (which then neither decodes nor compiles the profile). It does
// not use os/exec's Wait: a caller that reaps every child (a VM's PID 1)
// may reap the compiler first, so the output is checked instead (whole
// instructions ending in a return, nothing on stderr).
func (l *Launcher) Precompile(filter *specs.LinuxSeccomp) error {
	if filter == nil {
		return errors.New("precompile: no seccomp profile")
	}
	profile, err := json.Marshal(filter)
	if err != nil {
		return err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return err
	}
	proc, err := os.StartProcess(l.path(), []string{"berth-sandbox-init", "seccomp-compile"}, &os.ProcAttr{
		Dir: "/", Files: []*os.File{inR, outW, errW}})
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		return fmt.Errorf("precompile the seccomp profile: %w", err)
	}
	go func() { _, _ = inW.Write(profile); inW.Close() }()
	var stderr bytes.Buffer
	errDone := make(chan struct{})
	go func() { _, _ = stderr.ReadFrom(errR); errR.Close(); close(errDone) }()
	var out bytes.Buffer
	_, rerr := out.ReadFrom(outR)
	outR.Close()
	<-errDone
	_, _ = proc.Wait() // ECHILD when the caller's reaper got it first
	b := out.Bytes()
	const bpfRet = 0x06 // BPF_RET class: a program ends with a return
	switch {
	case rerr != nil:
		return fmt.Errorf("precompile the seccomp profile: %w", rerr)
	case stderr.Len() > 0:
		return fmt.Errorf("precompile the seccomp profile: %s", bytes.TrimSpace(stderr.Bytes()))
	case len(b) == 0 || len(b)%8 != 0 || binary.NativeEndian.Uint16(b[len(b)-8:])&0x07 != bpfRet:
		return fmt.Errorf("precompile the seccomp profile: %d bytes are not a whole program", len(b))
	}
	h := sha256.New()
	h.Write(profile)
	h.Write([]byte(l.identity))
	l.memoMu.Lock()
	if l.memo == nil {
		l.memo = map[string][]byte{}
	}
	l.memo[hex.EncodeToString(h.Sum(nil))] = bytes.Clone(b)
	l.memoMu.Unlock()
	return nil
}
