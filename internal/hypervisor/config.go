package hypervisor

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// MinMemory is the smallest guest RAM Validate accepts (64 MiB).
const MinMemory = 64 << 20

// MaxSocketPath is the longest unix socket path accepted under RunDir
// (macOS sun_path is 104 bytes including the NUL).
const MaxSocketPath = 103

// socketNames are the sockets drivers create in RunDir; the longest decides
// how long RunDir may be.
var socketNames = []string{"agent.sock", "qmp.sock"}

var tagRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,35}$`)

// Validate checks cfg without touching the hypervisor: required fields,
// that the files and directories it names exist and are of the right kind,
// sizes, device names and socket path lengths. Errors are
// errdefs.ErrInvalidArgument and name the offending field and value.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return errdefs.InvalidArgument("vm config: "+format, args...)
	}
	if err := regularFile("kernel", c.Kernel); err != nil {
		return err
	}
	if c.Initrd != "" {
		if err := regularFile("initrd", c.Initrd); err != nil {
			return err
		}
	}
	for _, a := range c.Cmdline {
		if a == "" || strings.ContainsAny(a, " \t\n\"") {
			return bad("kernel argument %q: empty or contains whitespace or quotes", a)
		}
	}
	if c.CPUs < 1 || c.CPUs > 255 {
		return bad("cpus %d: must be 1..255", c.CPUs)
	}
	if c.MemoryBytes < MinMemory || c.MemoryBytes%(1<<20) != 0 {
		return bad("memory %d bytes: must be a whole number of MiB, at least %d MiB", c.MemoryBytes, MinMemory>>20)
	}
	for i, d := range c.Disks {
		switch d.Format {
		case "", "raw", "qcow2":
		default:
			return bad("disk %d (%s): format %q: want raw or qcow2", i, d.Path, d.Format)
		}
		if err := regularFile(fmt.Sprintf("disk %d", i), d.Path); err != nil {
			return err
		}
	}
	tags := map[string]bool{}
	for i, s := range c.Shares {
		if !tagRE.MatchString(s.Tag) {
			return bad("share %d: tag %q: want 1-36 characters of [A-Za-z0-9_.-]", i, s.Tag)
		}
		if tags[s.Tag] {
			return bad("share %d: tag %q used twice", i, s.Tag)
		}
		tags[s.Tag] = true
		if err := directory(fmt.Sprintf("share %q", s.Tag), s.Path); err != nil {
			return err
		}
	}
	for i, n := range c.NICs {
		if n.MAC != "" {
			if _, err := parseMAC(n.MAC); err != nil {
				return bad("nic %d: mac %q: %v", i, n.MAC, err)
			}
		}
		if n.Socket != "" {
			if n.TAP != "" {
				return bad("nic %d: tap %q and socket %q: want one of them", i, n.TAP, n.Socket)
			}
			if !filepath.IsAbs(n.Socket) || len(n.Socket) > MaxSocketPath {
				return bad("nic %d: socket %q: want an absolute path of at most %d bytes", i, n.Socket, MaxSocketPath)
			}
		}
	}
	if c.ConsoleLog == "" || !filepath.IsAbs(c.ConsoleLog) {
		return bad("console log %q: want an absolute path", c.ConsoleLog)
	}
	if err := directory("console log directory", filepath.Dir(c.ConsoleLog)); err != nil {
		return err
	}
	if err := directory("run dir", c.RunDir); err != nil {
		return err
	}
	for _, n := range socketNames {
		if p := filepath.Join(c.RunDir, n); len(p) > MaxSocketPath {
			return bad("run dir %q: socket path %s is %d bytes, longer than %d", c.RunDir, p, len(p), MaxSocketPath)
		}
	}
	if c.MemoryPrivate {
		if c.MemoryFile == "" {
			return bad("memory private without a memory file")
		}
		if fi, err := os.Stat(c.MemoryFile); err != nil || fi.Size() != c.MemoryBytes {
			return bad("memory file %q: a private mapping needs the saved RAM file of %d bytes (%v)", c.MemoryFile, c.MemoryBytes, err)
		}
	}
	if c.MemoryFile != "" {
		if !filepath.IsAbs(c.MemoryFile) {
			return bad("memory file %q: want an absolute path", c.MemoryFile)
		}
		if err := directory("memory file directory", filepath.Dir(c.MemoryFile)); err != nil {
			return err
		}
		if fi, err := os.Stat(c.MemoryFile); err == nil && !fi.Mode().IsRegular() {
			return bad("memory file %q: not a regular file", c.MemoryFile)
		}
	}
	return nil
}

func regularFile(what, path string) error {
	if path == "" || !filepath.IsAbs(path) {
		return errdefs.InvalidArgument("vm config: %s %q: want an absolute path", what, path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return errdefs.InvalidArgument("vm config: %s: %v", what, err)
	}
	if !fi.Mode().IsRegular() {
		return errdefs.InvalidArgument("vm config: %s %q: not a regular file", what, path)
	}
	return nil
}

func directory(what, path string) error {
	if path == "" || !filepath.IsAbs(path) {
		return errdefs.InvalidArgument("vm config: %s %q: want an absolute path", what, path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return errdefs.InvalidArgument("vm config: %s: %v", what, err)
	}
	if !fi.IsDir() {
		return errdefs.InvalidArgument("vm config: %s %q: not a directory", what, path)
	}
	return nil
}

// parseMAC accepts a unicast 6-byte MAC in colon form.
func parseMAC(s string) ([6]byte, error) {
	var m [6]byte
	n, err := fmt.Sscanf(strings.ToLower(s), "%02x:%02x:%02x:%02x:%02x:%02x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5])
	if err != nil || n != 6 || len(s) != 17 {
		return m, fmt.Errorf("want six colon-separated hex bytes")
	}
	if m[0]&1 != 0 {
		return m, fmt.Errorf("multicast address")
	}
	return m, nil
}

// KernelCmdline joins the caller's arguments with the platform's: a platform
// argument is added only when no caller argument has the same key (the part
// before '='), so the caller can override, e.g., console=.
func KernelCmdline(args, platform []string) string {
	have := map[string]bool{}
	out := append([]string(nil), args...)
	for _, a := range args {
		have[argKey(a)] = true
	}
	for _, a := range platform {
		if !have[argKey(a)] {
			out = append(out, a)
			have[argKey(a)] = true
		}
	}
	return strings.Join(out, " ")
}

func argKey(a string) string {
	k, _, _ := strings.Cut(a, "=")
	return k
}
