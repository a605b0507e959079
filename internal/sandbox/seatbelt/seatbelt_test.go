package seatbelt

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden profiles in testdata")

func TestProfilesMatchGoldenFiles(t *testing.T) {
	tests := map[string]Policy{
		"network-none":      {Root: "/var/lib/berth/c1/rootfs", Network: NetworkNone},
		"network-all-tty":   {Root: "/var/lib/berth/c1/rootfs", Network: NetworkAll, TTY: true},
		"localhost-volumes": {Root: "/r", Network: NetworkLocalhost, Volumes: []Volume{{Path: "/data"}, {Path: "/conf", ReadOnly: true}}},
	}
	for name, p := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Profile(p)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", name+".sb")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("profile differs from %s (go test -update rewrites it):\n%s", golden, got)
			}
		})
	}
}

func TestProfileInvariants(t *testing.T) {
	p := Policy{Root: "/r", Network: NetworkNone, Volumes: []Volume{{Path: "/ro", ReadOnly: true}}}
	prof, err := Profile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(prof, "(version 1)\n(deny default)\n") {
		t.Error("profile does not deny by default")
	}
	if strings.Contains(prof, "/r\"") || strings.Contains(prof, "\"/ro\"") {
		t.Error("paths are spliced into the profile instead of passed as parameters")
	}
	if strings.Contains(prof, "network") && !strings.Contains(prof, ";; Network: none.") {
		t.Error("network allowed with network none")
	}
	for _, l := range strings.Split(prof, "\n") {
		if strings.Contains(l, "file-write*") && strings.Contains(l, "VOLUME_0") {
			t.Error("read-only volume is writable")
		}
		if strings.Contains(l, "(allow file-write*") && strings.Contains(l, "(subpath \"/") {
			t.Errorf("writes allowed outside the root and volumes: %s", l)
		}
	}
	argv, err := Command(p, []string{"/r/bin/app", "-x"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{SandboxExec, "-p", prof, "-D", "ROOT=/r", "-D", "VOLUME_0=/ro", "--", "/r/bin/app", "-x"}
	if !slices.Equal(argv, want) {
		t.Errorf("argv = %q, want %q", argv, want)
	}
}

func TestPolicyErrorsNameTheInput(t *testing.T) {
	for _, tc := range []struct {
		p    Policy
		want string
	}{
		{Policy{Root: "rel", Network: NetworkNone}, `root "rel"`},
		{Policy{Root: "/", Network: NetworkNone}, "whole host"},
		{Policy{Root: "/r/../etc", Network: NetworkNone}, "contains .."},
		{Policy{Root: "/r", Network: "bridge"}, `network "bridge"`},
		{Policy{Root: "/r", Network: NetworkAll, Volumes: []Volume{{Path: "/a\nb"}}}, "volume 0"},
	} {
		if _, err := Profile(tc.p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Profile(%+v) error %v, want %q", tc.p, err, tc.want)
		}
	}
	if _, err := Command(Policy{Root: "/r", Network: NetworkNone}, nil); err == nil {
		t.Error("Command without argv accepted")
	}
}
