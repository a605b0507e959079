package spec

import (
	"math"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/lifecycle"
)

func TestBuildUlimits(t *testing.T) {
	s, err := Build(nginx, lifecycle.Config{Ulimits: []lifecycle.Ulimit{
		{Name: "nofile", Soft: 1024, Hard: 2048}, {Name: "core", Soft: -1, Hard: -1},
	}}, Extra{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1, Hard: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	want := []specs.POSIXRlimit{
		{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 2048},
		{Type: "RLIMIT_CORE", Soft: math.MaxUint64, Hard: math.MaxUint64},
	}
	if len(s.Process.Rlimits) != 2 || s.Process.Rlimits[0] != want[0] || s.Process.Rlimits[1] != want[1] {
		t.Fatalf("rlimits = %+v, want %+v (the config's over Extra's, -1 unlimited)", s.Process.Rlimits, want)
	}
}

func TestBuildDeviceMapping(t *testing.T) {
	s, err := Build(nginx, lifecycle.Config{Devices: []lifecycle.DeviceMapping{
		{PathOnHost: "/dev/null", PathInContainer: "/dev/mynull", Permissions: "rw"},
		{PathOnHost: "/dev/zero"},
	}}, Extra{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Linux.Devices) != 2 {
		t.Fatalf("devices = %+v", s.Linux.Devices)
	}
	null, zero := s.Linux.Devices[0], s.Linux.Devices[1]
	if null.Path != "/dev/mynull" || null.Type != "c" || null.Major != 1 || null.Minor != 3 || null.FileMode == nil {
		t.Errorf("null = %+v, want /dev/mynull c 1:3", null)
	}
	if zero.Path != "/dev/zero" || zero.Major != 1 || zero.Minor != 5 {
		t.Errorf("zero = %+v, want /dev/zero c 1:5 (the host path by default)", zero)
	}
	rules := s.Linux.Resources.Devices
	if rules[0].Allow || rules[0].Type != "a" {
		t.Fatalf("first rule %+v, want deny all", rules[0])
	}
	last2 := rules[len(rules)-2:]
	if !last2[0].Allow || *last2[0].Major != 1 || *last2[0].Minor != 3 || last2[0].Access != "rw" {
		t.Errorf("rule for /dev/mynull = %+v", last2[0])
	}
	if last2[1].Access != "rwm" || *last2[1].Minor != 5 {
		t.Errorf("rule for /dev/zero = %+v, want rwm by default", last2[1])
	}
}

func TestBuildSecurityOpt(t *testing.T) {
	s, err := Build(nginx, lifecycle.Config{SecurityOpt: []string{"no-new-privileges", "apparmor=unconfined", "label=disable"}}, Extra{})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Process.NoNewPrivileges || s.Linux.Seccomp == nil {
		t.Fatalf("no-new-privileges %v, seccomp %v; want true and the default profile", s.Process.NoNewPrivileges, s.Linux.Seccomp != nil)
	}
	s, err = Build(nginx, lifecycle.Config{SecurityOpt: []string{"no-new-privileges=true", "no-new-privileges=false", "seccomp=unconfined"}}, Extra{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Process.NoNewPrivileges || s.Linux.Seccomp != nil {
		t.Fatalf("no-new-privileges %v, seccomp %+v; want the last value (false) and no filter", s.Process.NoNewPrivileges, s.Linux.Seccomp)
	}
	profile := `{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdirat","mkdir"],"action":"SCMP_ACT_ERRNO"}]}`
	s, err = Build(nginx, lifecycle.Config{SecurityOpt: []string{"seccomp=" + profile}}, Extra{})
	if err != nil {
		t.Fatal(err)
	}
	sc := s.Linux.Seccomp
	if sc == nil || sc.DefaultAction != specs.ActAllow || len(sc.Syscalls) != 1 || sc.Syscalls[0].Action != specs.ActErrno {
		t.Fatalf("seccomp = %+v, want the given profile", sc)
	}
}

func TestOptionErrorsNameTheInput(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  lifecycle.Config
		want string
	}{
		{"unknown ulimit", lifecycle.Config{Ulimits: []lifecycle.Ulimit{{Name: "files", Soft: 1, Hard: 1}}}, `ulimit "files": unknown name`},
		{"soft above hard", lifecycle.Config{Ulimits: []lifecycle.Ulimit{{Name: "nproc", Soft: 9, Hard: 3}}}, "ulimit nproc: soft limit 9 is above hard limit 3"},
		{"soft unlimited hard not", lifecycle.Config{Ulimits: []lifecycle.Ulimit{{Name: "nproc", Soft: -1, Hard: 3}}}, "ulimit nproc: soft limit -1"},
		{"missing device", lifecycle.Config{Devices: []lifecycle.DeviceMapping{{PathOnHost: "/dev/berth-no-such"}}}, `device "/dev/berth-no-such": stat`},
		{"not a device", lifecycle.Config{Devices: []lifecycle.DeviceMapping{{PathOnHost: "/etc/hostname", PathInContainer: "/dev/h"}}}, `device "/etc/hostname": not a character`},
		{"outside /dev", lifecycle.Config{Devices: []lifecycle.DeviceMapping{{PathOnHost: "/dev/null", PathInContainer: "/tmp/n"}}}, `"/tmp/n" must be under /dev/`},
		{"bad perms", lifecycle.Config{Devices: []lifecycle.DeviceMapping{{PathOnHost: "/dev/null", Permissions: "rx"}}}, `permissions "rx"`},
		{"unknown security opt", lifecycle.Config{SecurityOpt: []string{"systempaths=unconfined"}}, `security-opt "systempaths=unconfined"`},
		{"bad nnp", lifecycle.Config{SecurityOpt: []string{"no-new-privileges=maybe"}}, `security-opt "no-new-privileges=maybe"`},
		{"seccomp path", lifecycle.Config{SecurityOpt: []string{"seccomp=/etc/p.json"}}, `security-opt "seccomp=/etc/p.json"`},
		{"bad profile", lifecycle.Config{SecurityOpt: []string{`seccomp={"defaultAction":`}}, "security-opt seccomp profile"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Build(nginx, c.cfg, Extra{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
}
