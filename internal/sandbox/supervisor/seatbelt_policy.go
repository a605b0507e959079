package supervisor

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/berth-dev/berth/internal/sandbox/seatbelt"
)

// AnnotationNetwork is the Seatbelt network of a darwin task: "all",
// "none" or "localhost" (the default, the nearest thing to a private
// loopback-only network namespace).
const AnnotationNetwork = "org.berth.seatbelt.network"

// seatbeltPolicy is what a darwin task may touch: its rootfs directory
// (one bind descriptor: an APFS clone), its bind mounts as volumes, the
// network of AnnotationNetwork, and a terminal when its process has one.
func seatbeltPolicy(spec TaskSpec) (seatbelt.Policy, error) {
	if len(spec.Rootfs) != 1 || spec.Rootfs[0].Type != "bind" || !filepath.IsAbs(spec.Rootfs[0].Source) {
		return seatbelt.Policy{}, errorf(KindInvalid, "task %s: a darwin sandbox takes one bind rootfs (a directory), got %+v", spec.ID, spec.Rootfs)
	}
	if spec.OCI == nil || spec.OCI.Process == nil {
		return seatbelt.Policy{}, errorf(KindInvalid, "task %s has no process", spec.ID)
	}
	network := spec.OCI.Annotations[AnnotationNetwork]
	if network == "" {
		network = seatbelt.NetworkLocalhost
	}
	// Seatbelt matches the paths a process resolves (/var is
	// /private/var on darwin), so the policy names real paths.
	root, err := realDir(spec.Rootfs[0].Source)
	if err != nil {
		return seatbelt.Policy{}, errorf(KindInvalid, "task %s: rootfs %v", spec.ID, err)
	}
	p := seatbelt.Policy{Root: root, Network: network, TTY: spec.OCI.Process.Terminal}
	for _, m := range spec.OCI.Mounts {
		if m.Type == "bind" {
			src, err := realDir(m.Source)
			if err != nil {
				return seatbelt.Policy{}, errorf(KindInvalid, "task %s: volume for %s: %v", spec.ID, m.Destination, err)
			}
			p.Volumes = append(p.Volumes, seatbelt.Volume{Path: src, ReadOnly: slices.Contains(m.Options, "ro")})
		}
	}
	if err := p.Validate(); err != nil {
		return seatbelt.Policy{}, errorf(KindInvalid, "task %s: %v", spec.ID, err)
	}
	return p, nil
}

// realDir returns path with its symlinks resolved; it must be a directory
// or a file that exists.
func realDir(path string) (string, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	return real, nil
}

// inRoot maps an absolute path of a darwin image to the host: under the
// root, except the system paths the image shares with its host (there is
// no mount namespace on darwin).
func inRoot(root, path string) string {
	if path == "" {
		return root
	}
	if !filepath.IsAbs(path) {
		return path // a name looked up in PATH
	}
	for _, sys := range []string{"/bin/", "/usr/bin/", "/usr/libexec/", "/sbin/", "/usr/sbin/", "/System/"} {
		if strings.HasPrefix(path, sys) {
			return path
		}
	}
	return filepath.Join(root, path)
}
