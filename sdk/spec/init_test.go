package spec

import (
	"slices"
	"testing"

	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// TestBuildInit: --init puts Berth's init in front of the command Docker's
// rules chose and tells the isolation mode where to bind it; without it the
// spec has neither.
func TestBuildInit(t *testing.T) {
	s, err := Build(nginx, lifecycle.Config{Image: "nginx", Init: true}, Extra{ContainerID: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/sbin/berth-init", "--", "/docker-entrypoint.sh", "nginx", "-g", "daemon off;"}
	if !slices.Equal(s.Process.Args, want) {
		t.Fatalf("args = %q, want %q", s.Process.Args, want)
	}
	if got := s.Annotations[isolation.AnnotationInit]; got != isolation.InitPath {
		t.Fatalf("annotation %s = %q, want %q", isolation.AnnotationInit, got, isolation.InitPath)
	}
	s, err = Build(nginx, lifecycle.Config{Image: "nginx", Cmd: []string{"sh"}}, Extra{ContainerID: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	if s.Process.Args[0] != "/docker-entrypoint.sh" {
		t.Fatalf("args without --init = %q", s.Process.Args)
	}
	if _, ok := s.Annotations[isolation.AnnotationInit]; ok {
		t.Fatal("annotation set without --init")
	}
}
