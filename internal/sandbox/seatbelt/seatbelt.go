// Package seatbelt generates the Seatbelt (SBPL) profile that confines a
// darwin-native workload of the sandbox isolation mode, and the
// sandbox-exec command line that applies it. It is pure Go and runs
// anywhere, so the profile is tested on Linux (golden files); only darwin
// runs it.
//
// The profile denies by default and allows: reading the system paths dyld
// and libSystem need; reading, writing and executing under the container's
// root directory; reading (and, unless read-only, writing) its volumes;
// executing system binaries; the terminal devices; and the network the
// spec asks for (all, none, or localhost only). Paths are passed as
// sandbox-exec parameters (-D ROOT=…), never spliced into the profile
// text, so no path can change the policy.
package seatbelt

import (
	"fmt"
	"slices"
	"strings"
)

// SandboxExec is the absolute path of Apple's sandbox-exec.
const SandboxExec = "/usr/bin/sandbox-exec"

// Network modes.
const (
	NetworkAll       = "all"
	NetworkNone      = "none"
	NetworkLocalhost = "localhost"
)

// Volume is a host directory the workload may use.
type Volume struct {
	Path     string
	ReadOnly bool
}

// Policy is what a workload may touch.
type Policy struct {
	// Root is the container's root directory (its rootfs snapshot): read,
	// write and exec.
	Root string
	// Volumes are extra directories, in order.
	Volumes []Volume
	// Network is NetworkAll, NetworkNone or NetworkLocalhost.
	Network string
	// TTY allows the pseudo-terminal devices.
	TTY bool
}

// systemReadPaths are what dyld, libSystem and the usual system binaries
// read on macOS.
var systemReadPaths = []string{
	"/System", "/usr/lib", "/usr/share", "/usr/bin", "/usr/libexec", "/bin", "/sbin", "/usr/sbin",
	"/Library/Apple", "/Library/Preferences", "/private/var/db/dyld", "/private/var/db/timezone",
	"/private/etc",
}

// systemReadFiles are single files read by almost every process.
var systemReadFiles = []string{
	"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom", "/dev/dtracehelper",
	"/etc", "/var", "/tmp", "/private/var/select/sh",
}

// systemExecPaths hold the system binaries a workload may run.
var systemExecPaths = []string{"/bin", "/usr/bin", "/usr/libexec", "/sbin", "/usr/sbin"}

// machServices are the services libSystem looks up at start.
var machServices = []string{
	"com.apple.system.logger", "com.apple.system.notification_center",
	"com.apple.system.opendirectoryd.libinfo", "com.apple.system.opendirectoryd.membership",
}

// Validate reports what makes p unusable.
func (p Policy) Validate() error {
	check := func(what, path string) error {
		if !strings.HasPrefix(path, "/") {
			return fmt.Errorf("seatbelt: %s %q is not an absolute path", what, path)
		}
		if strings.ContainsAny(path, "\x00\n") {
			return fmt.Errorf("seatbelt: %s %q contains a NUL or a newline", what, path)
		}
		if slices.Contains(strings.Split(path, "/"), "..") {
			return fmt.Errorf("seatbelt: %s %q contains ..", what, path)
		}
		return nil
	}
	if err := check("root", p.Root); err != nil {
		return err
	}
	if p.Root == "/" {
		return fmt.Errorf("seatbelt: root %q would allow writing the whole host", p.Root)
	}
	for i, v := range p.Volumes {
		if err := check(fmt.Sprintf("volume %d", i), v.Path); err != nil {
			return err
		}
	}
	switch p.Network {
	case NetworkAll, NetworkNone, NetworkLocalhost:
	default:
		return fmt.Errorf("seatbelt: network %q is not %s, %s or %s", p.Network, NetworkAll, NetworkNone, NetworkLocalhost)
	}
	return nil
}

// Profile returns the SBPL text of p (deterministic for a given policy
// shape; the paths themselves are parameters, see Params).
func Profile(p Policy) (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("(version 1)")
	w("(deny default)")
	w("")
	w(";; Processes of this sandbox only.")
	w("(allow process-fork)")
	w("(allow signal (target same-sandbox))")
	w("(allow process-info* (target same-sandbox))")
	w("(allow sysctl-read)")
	w("(allow file-read-metadata)")
	w("(allow mach-lookup")
	for _, s := range machServices {
		w("  (global-name %q)", s)
	}
	w(")")
	w(`(allow ipc-posix-shm-read* (ipc-posix-name "apple.shm.notification_center"))`)
	w("")
	w(";; What dyld and libSystem read.")
	w("(allow file-read*")
	for _, s := range systemReadPaths {
		w("  (subpath %q)", s)
	}
	for _, s := range systemReadFiles {
		w("  (literal %q)", s)
	}
	w(")")
	w(`(allow file-write-data (literal "/dev/null") (literal "/dev/zero"))`)
	w("")
	w(";; The container's root: its own files.")
	w(`(allow file-read* file-write* (subpath (param "ROOT")))`)
	w(`(allow process-exec (subpath (param "ROOT")))`)
	w("(allow process-exec")
	for _, s := range systemExecPaths {
		w("  (subpath %q)", s)
	}
	w(")")
	if len(p.Volumes) > 0 {
		w("")
		w(";; Volumes.")
		for i, v := range p.Volumes {
			if v.ReadOnly {
				w(`(allow file-read* (subpath (param "VOLUME_%d")))`, i)
			} else {
				w(`(allow file-read* file-write* (subpath (param "VOLUME_%d")))`, i)
			}
		}
	}
	if p.TTY {
		w("")
		w(";; The terminal.")
		w(`(allow file-read* file-write* file-ioctl (literal "/dev/tty") (regex #"^/dev/ttys[0-9]+$") (literal "/dev/ptmx"))`)
	}
	w("")
	switch p.Network {
	case NetworkAll:
		w(";; Network: all.")
		w("(allow network*)")
		w("(allow system-socket)")
	case NetworkLocalhost:
		w(";; Network: localhost only.")
		w(`(allow network-outbound (remote ip "localhost:*") (remote unix-socket))`)
		w(`(allow network-inbound (local ip "localhost:*"))`)
		w(`(allow network-bind (local ip "localhost:*"))`)
		w("(allow system-socket)")
	case NetworkNone:
		w(";; Network: none.")
	}
	return b.String(), nil
}

// Params returns the sandbox-exec parameters the profile refers to.
func Params(p Policy) []string {
	out := []string{"ROOT=" + p.Root}
	for i, v := range p.Volumes {
		out = append(out, fmt.Sprintf("VOLUME_%d=%s", i, v.Path))
	}
	return out
}

// Command returns the argv that runs argv confined by p:
// /usr/bin/sandbox-exec -p PROFILE -D ROOT=… [-D VOLUME_n=…] -- argv…
func Command(p Policy, argv []string) ([]string, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("seatbelt: no command")
	}
	profile, err := Profile(p)
	if err != nil {
		return nil, err
	}
	out := []string{SandboxExec, "-p", profile}
	for _, d := range Params(p) {
		out = append(out, "-D", d)
	}
	out = append(out, "--")
	return append(out, argv...), nil
}
