//go:build linux || darwin

package main

import (
	goruntime "runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// addInitMount honours isolation.AnnotationInit (docker run --init): it
// binds the sandbox init binary (initPath, which runs as the reaping init
// under the base name of isolation.InitPath, sandbox.ReaperName) read-only at the annotated
// path of the container, oci being the task's own copy. Only the Linux
// namespace backend has a mount namespace to bind it in; Seatbelt refuses
// with NotImplemented.
func addInitMount(plat platform, initPath string, oci *specs.Spec) error {
	dest, ok := oci.Annotations[isolation.AnnotationInit]
	if !ok {
		return nil
	}
	if _, host := plat.(hostPlatform); !host || goruntime.GOOS != "linux" {
		return errdefs.NotImplemented("isolation sandbox: --init is Linux-only (the Seatbelt backend has no mount namespace to put an init in)")
	}
	if err := isolation.CheckInitPath(dest); err != nil {
		return err
	}
	if initPath == "" {
		return errdefs.Unavailable("isolation sandbox: no init binary configured")
	}
	oci.Mounts = append(oci.Mounts, specs.Mount{
		Destination: dest, Type: "bind", Source: initPath,
		Options: []string{"bind", "ro", "nosuid", "nodev"},
	})
	return nil
}
