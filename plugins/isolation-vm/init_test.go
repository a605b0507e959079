package main

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
)

// TestInitNotImplemented: mode vm refuses --init plainly, before any VM.
func TestInitNotImplemented(t *testing.T) {
	spec := isolation.Spec{ID: "c1", OCI: &specs.Spec{
		Process:     &specs.Process{Args: []string{isolation.InitPath, "--", "true"}},
		Annotations: map[string]string{isolation.AnnotationInit: isolation.InitPath},
	}}
	err := checkSpec(spec)
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "--init") {
		t.Fatalf("checkSpec with --init: %v; want NotImplemented naming --init", err)
	}
}
