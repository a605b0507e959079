package main

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// TestAddInitMount: the --init annotation becomes a read-only bind of the
// init binary on Linux; Seatbelt refuses it; a bad path is named. (The
// init running as PID 1 is proved end to end by core/cmd/berth's "init".)
func TestAddInitMount(t *testing.T) {
	oci := &specs.Spec{Annotations: map[string]string{}}
	if err := addInitMount(hostPlatform{}, "/opt/berth-sandbox-init", oci); err != nil || len(oci.Mounts) != 0 {
		t.Fatalf("no annotation: %v, mounts %v", err, oci.Mounts)
	}
	oci.Annotations[isolation.AnnotationInit] = isolation.InitPath
	if err := addInitMount(hostPlatform{}, "/opt/berth-sandbox-init", oci); err != nil {
		t.Fatal(err)
	}
	want := specs.Mount{Destination: "/sbin/berth-init", Type: "bind", Source: "/opt/berth-sandbox-init", Options: []string{"bind", "ro", "nosuid", "nodev"}}
	if len(oci.Mounts) != 1 || oci.Mounts[0].Destination != want.Destination || oci.Mounts[0].Source != want.Source ||
		oci.Mounts[0].Type != want.Type || len(oci.Mounts[0].Options) != 4 || oci.Mounts[0].Options[1] != "ro" {
		t.Fatalf("mounts = %+v, want %+v", oci.Mounts, want)
	}
	if err := addInitMount(seatbeltPlatform{}, "/x", &specs.Spec{Annotations: oci.Annotations}); !errdefs.IsNotImplemented(err) {
		t.Fatalf("seatbelt: %v, want NotImplemented", err)
	}
	for _, bad := range []string{"sbin/berth-init", "/sbin/../berth-init", "/bin/sh"} {
		err := addInitMount(hostPlatform{}, "/x", &specs.Spec{Annotations: map[string]string{isolation.AnnotationInit: bad}})
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("annotation %q: %v, want InvalidArgument", bad, err)
		}
	}
}
