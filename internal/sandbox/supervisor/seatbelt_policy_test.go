package supervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/sandbox/seatbelt"
	"github.com/berth-dev/berth/sdk/mount"
)

func TestSeatbeltPolicyFromSpec(t *testing.T) {
	root, data := t.TempDir(), t.TempDir()
	// The rootfs is named through a symlink (as /var is /private/var on
	// darwin): the policy names the real directory.
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(root, link); err != nil {
		t.Fatal(err)
	}
	spec := TaskSpec{ID: "d1", Rootfs: []mount.Mount{{Type: "bind", Source: link}},
		OCI: &specs.Spec{Process: &specs.Process{Terminal: true, Args: []string{"/app/run"}},
			Annotations: map[string]string{AnnotationNetwork: seatbelt.NetworkNone},
			Mounts: []specs.Mount{{Type: "bind", Source: data, Destination: "/data", Options: []string{"rbind", "ro"}},
				{Type: "tmpfs", Source: "tmpfs", Destination: "/tmp"}}}}
	p, err := seatbeltPolicy(spec)
	if err != nil {
		t.Fatal(err)
	}
	if p.Root != root || p.Network != seatbelt.NetworkNone || !p.TTY ||
		len(p.Volumes) != 1 || p.Volumes[0] != (seatbelt.Volume{Path: data, ReadOnly: true}) {
		t.Errorf("policy %+v", p)
	}
	delete(spec.OCI.Annotations, AnnotationNetwork)
	if p, _ := seatbeltPolicy(spec); p.Network != seatbelt.NetworkLocalhost {
		t.Errorf("default network %q, want localhost", p.Network)
	}
	spec.OCI.Mounts[0].Source = filepath.Join(data, "missing")
	if _, err := seatbeltPolicy(spec); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("missing volume: %v, want an error naming it", err)
	}
	spec.Rootfs = []mount.Mount{{Type: "bind", Source: filepath.Join(root, "nope")}}
	if _, err := seatbeltPolicy(spec); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Errorf("missing rootfs: %v, want an error naming it", err)
	}
	spec.Rootfs = []mount.Mount{{Type: "overlay", Source: "overlay"}}
	if _, err := seatbeltPolicy(spec); err == nil || !strings.Contains(err.Error(), "one bind rootfs") {
		t.Errorf("overlay rootfs: %v", err)
	}
}

func TestInRoot(t *testing.T) {
	for in, want := range map[string]string{
		"/app/run": "/r/app/run", "/usr/bin/env": "/usr/bin/env", "sh": "sh", "": "/r", "/": "/r",
	} {
		if got := inRoot("/r", in); got != want {
			t.Errorf("inRoot(%q) = %q, want %q", in, got, want)
		}
	}
}
