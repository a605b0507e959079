package main

import (
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/mount"
)

// TestInitCheckSpec: mode vm accepts --init at isolation.InitPath (the guest
// agent binds its berth-sandbox-init there; TestRunInVM runs it) and refuses
// a malformed annotation with InvalidArgument, before any VM.
func TestInitCheckSpec(t *testing.T) {
	img := filepath.Join(t.TempDir(), "rootfs.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		dest string
		ok   bool
	}{
		{isolation.InitPath, true},
		{"/usr/local/bin/berth-init", true},
		{"sbin/berth-init", false},
		{"/sbin/../sbin/berth-init", false},
		{"/sbin/tini", false},
	} {
		spec := isolation.Spec{ID: "c1", OCI: &specs.Spec{
			Process:     &specs.Process{Args: []string{tc.dest, "--", "true"}},
			Annotations: map[string]string{isolation.AnnotationInit: tc.dest},
		}, Rootfs: []mount.Mount{{Type: "ext4", Source: img}}}
		err := checkSpec(spec)
		if tc.ok && err != nil {
			t.Errorf("checkSpec with --init at %q: %v; want accepted", tc.dest, err)
		}
		if !tc.ok && !errdefs.IsInvalidArgument(err) {
			t.Errorf("checkSpec with --init at %q: %v; want InvalidArgument", tc.dest, err)
		}
		if errdefs.IsNotImplemented(err) {
			t.Errorf("checkSpec with --init at %q: %v; mode vm supports --init", tc.dest, err)
		}
	}
}
