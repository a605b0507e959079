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
	if l.SeccompCacheDir == "" || filter == nil {
		return nil, nil
	}
	profile, err := json.Marshal(filter)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	h.Write(profile)
	h.Write([]byte(l.identity))
	path := filepath.Join(l.SeccompCacheDir, hex.EncodeToString(h.Sum(nil))+".bpf")
	if b, err := os.ReadFile(path); err == nil {
		return b, nil
	}
	cmd := exec.Command(l.path(), "seccomp-compile")
	cmd.Stdin = bytes.NewReader(profile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.ExtraFiles = nil
	b, err := cmd.Output()
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
