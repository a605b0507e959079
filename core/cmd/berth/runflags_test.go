package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/sdk/images"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

func parseRunFlags(t *testing.T, args ...string) (lifecycle.Config, error) {
	t.Helper()
	var f createFlags
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return f.config(fs.Arg(0), fs.Args()[1:])
}

func TestRunFlagsBuildTheConfig(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "env")
	if err := os.WriteFile(envFile, []byte("# comment\nA=1\n\nB=two words\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FROM_SHELL", "yes")
	cfg, err := parseRunFlags(t,
		"--name", "web", "-i", "-t", "-e", "C=3", "-e", "FROM_SHELL", "-e", "UNSET_HERE_X", "--env-file", envFile,
		"-v", "/srv:/data:ro", "--mount", "type=tmpfs,target=/cache", "--tmpfs", "/run:size=1m",
		"--read-only", "-w", "/work", "-u", "1000:1000", "--entrypoint", "/bin/sh", "-h", "box",
		"--cpus", "1.5", "--cpuset-cpus", "0", "--cpu-shares", "512", "-m", "64m", "--memory-reservation", "32m",
		"--memory-swap", "128m", "--pids-limit", "50", "--device-read-bps", "/dev/vda:1mb",
		"--device-write-bps", "/dev/vda:2m", "--cap-add", "NET_ADMIN", "--cap-drop", "MKNOD",
		"--restart", "on-failure:3", "-l", "tier=web", "--isolation", "sandbox", "--init",
		"IMG", "-c", "echo hi")
	if err != nil {
		t.Fatal(err)
	}
	want := lifecycle.Config{
		Image: "IMG", Isolation: "sandbox", Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "echo hi"},
		Env:  []string{"A=1", "B=two words", "C=3", "FROM_SHELL=yes"},
		User: "1000:1000", WorkingDir: "/work", Hostname: "box", Labels: map[string]string{"tier": "web"},
		Tty: true, OpenStdin: true, ReadOnlyRootfs: true, CapAdd: []string{"NET_ADMIN"}, CapDrop: []string{"MKNOD"},
		Init: true,
		Mounts: []lifecycle.Mount{
			{Type: "bind", Source: "/srv", Destination: "/data", ReadOnly: true},
			{Type: "tmpfs", Destination: "/cache"},
			{Type: "tmpfs", Source: "tmpfs", Destination: "/run", Options: []string{"size=1m"}},
		},
		Restart: lifecycle.RestartPolicy{Name: "on-failure", MaxRetries: 3},
	}
	want.Limits.CPUs, want.Limits.CPUSetCPUs, want.Limits.CPUShares = 1.5, "0", 512
	want.Limits.MemoryBytes, want.Limits.MemorySoftBytes, want.Limits.SwapBytes = 64<<20, 32<<20, 64<<20
	want.Limits.Pids, want.Limits.IODevice, want.Limits.IOReadBPS, want.Limits.IOWriteBPS = 50, "/dev/vda", 1<<20, 2<<20
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("config\n got %+v\nwant %+v", cfg, want)
	}
}

func TestRunFlagErrorsNameTheInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-v", "relative/dir:/x", "I"}, `-v "relative/dir:/x"`},
		{[]string{"-v", "/x:y", "I"}, `-v "/x:y"`},
		{[]string{"--mount", "type=nfs,target=/x", "I"}, `type "nfs"`},
		{[]string{"--tmpfs", "run", "I"}, `--tmpfs "run"`},
		{[]string{"-m", "lots", "I"}, `--memory: "lots" is not a size`},
		{[]string{"--memory-swap", "1g", "I"}, "--memory-swap 1g: needs --memory"},
		{[]string{"-m", "1g", "--memory-swap", "1g", "I"}, "no swap"},
		{[]string{"--restart", "sometimes", "I"}, `--restart "sometimes"`},
		{[]string{"--restart", "always:3", "I"}, "only on-failure"},
		{[]string{"--device-read-bps", "/dev/a:1m", "--device-write-bps", "/dev/b:1m", "I"}, "one device only"},
		{[]string{"-e", "=x", "I"}, `"=x" is not KEY=VALUE`},
		{[]string{"-l", "=x", "I"}, `--label "=x"`},
	} {
		_, err := parseRunFlags(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v; want it to mention %q", c.args, err, c.want)
		}
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{"KILL": 9, "sigterm": 15, "SIGHUP": 1, "10": 10} {
		got, err := parseSignal(in)
		if err != nil || int(got) != want {
			t.Errorf("parseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "NOPE", "0", "65"} {
		if _, err := parseSignal(bad); err == nil {
			t.Errorf("parseSignal(%q) succeeded", bad)
		}
	}
}

func TestDetachKeys(t *testing.T) {
	detached := false
	d := &detachReader{r: strings.NewReader("a\x10b\x10"), onDetach: func() { detached = true }}
	buf := make([]byte, 16)
	n, _ := d.Read(buf)
	// A Ctrl-P not followed by Ctrl-Q is passed on with its next byte; a
	// trailing one waits for the next read.
	if got := string(buf[:n]); got != "a\x10b" || detached {
		t.Fatalf("read %q (detached %v); want %q", got, detached, "a\x10b")
	}
}

func TestCommandOfFollowsDocker(t *testing.T) {
	img := &images.Config{Entrypoint: []string{"/entry"}, Cmd: []string{"default"}}
	for _, c := range []struct {
		entry, cmd []string
		image      *images.Config
		want       string
	}{
		{nil, nil, img, "/entry default"},
		{nil, []string{"mine"}, img, "/entry mine"},
		{[]string{"/own"}, nil, img, "/own"}, // an entrypoint of its own drops the image's command
		{[]string{"/own"}, []string{"x"}, img, "/own x"},
		{nil, []string{"sleep", "1"}, nil, "sleep 1"},
	} {
		ct := lifecycle.Container{Config: lifecycle.Config{Entrypoint: c.entry, Cmd: c.cmd}}
		if got := commandOf(ct, c.image); got != c.want {
			t.Errorf("commandOf(%v, %v) = %q; want %q", c.entry, c.cmd, got, c.want)
		}
	}
}

func TestRunFlagsUlimitDeviceSecurityOpt(t *testing.T) {
	profile := filepath.Join(t.TempDir(), "profile.json")
	body := `{"defaultAction":"SCMP_ACT_ALLOW"}`
	if err := os.WriteFile(profile, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	var f createFlags
	var warnings strings.Builder
	f.warnings = &warnings
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	f.register(fs)
	if err := fs.Parse([]string{
		"--ulimit", "nofile=1024:2048", "--ulimit", "core=-1", "--ulimit", "nproc=10:unlimited", "--ulimit", "nofile=64",
		"--device", "/dev/null", "--device", "/dev/null:/dev/mynull", "--device", "/dev/zero:r", "--device", "/dev/fuse:/dev/f:rw",
		"--security-opt", "no-new-privileges", "--security-opt", "seccomp=" + profile, "--security-opt", "apparmor=unconfined",
		"--security-opt", "seccomp=unconfined", "IMG"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := f.config(fs.Arg(0), fs.Args()[1:])
	if err != nil {
		t.Fatal(err)
	}
	wantUlimits := []lifecycle.Ulimit{{Name: "core", Soft: -1, Hard: -1}, {Name: "nproc", Soft: 10, Hard: -1}, {Name: "nofile", Soft: 64, Hard: 64}}
	if !reflect.DeepEqual(cfg.Ulimits, wantUlimits) {
		t.Errorf("ulimits %+v, want %+v (a repeated name replaces the earlier one)", cfg.Ulimits, wantUlimits)
	}
	wantDevices := []lifecycle.DeviceMapping{
		{PathOnHost: "/dev/null", PathInContainer: "/dev/null", Permissions: "rwm"},
		{PathOnHost: "/dev/null", PathInContainer: "/dev/mynull", Permissions: "rwm"},
		{PathOnHost: "/dev/zero", PathInContainer: "/dev/zero", Permissions: "r"},
		{PathOnHost: "/dev/fuse", PathInContainer: "/dev/f", Permissions: "rw"},
	}
	if !reflect.DeepEqual(cfg.Devices, wantDevices) {
		t.Errorf("devices %+v, want %+v", cfg.Devices, wantDevices)
	}
	wantOpts := []string{"no-new-privileges", "seccomp=" + body, "apparmor=unconfined", "seccomp=unconfined"}
	if !reflect.DeepEqual(cfg.SecurityOpt, wantOpts) {
		t.Errorf("security opts %q, want %q (the profile file's content)", cfg.SecurityOpt, wantOpts)
	}
	if !strings.Contains(warnings.String(), "apparmor=unconfined ignored") {
		t.Errorf("warnings %q, want one for apparmor", warnings.String())
	}
}

func TestUlimitDeviceSecurityOptErrorsNameTheInput(t *testing.T) {
	notJSON := filepath.Join(t.TempDir(), "p.json")
	if err := os.WriteFile(notJSON, []byte("not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ulimit", "nofile", "I"}, `--ulimit "nofile": want NAME=SOFT[:HARD]`},
		{[]string{"--ulimit", "files=1", "I"}, `--ulimit "files=1": unknown name "files"`},
		{[]string{"--ulimit", "nofile=many", "I"}, `--ulimit "nofile=many": limits are numbers`},
		{[]string{"--ulimit", "nofile=10:5", "I"}, `--ulimit "nofile=10:5": the soft limit is above`},
		{[]string{"--ulimit", "nofile=-1:5", "I"}, `--ulimit "nofile=-1:5": the soft limit is above`},
		{[]string{"--ulimit", "nofile=-2", "I"}, `--ulimit "nofile=-2"`},
		{[]string{"--device", "null", "I"}, `--device "null": the host and container paths must be absolute`},
		{[]string{"--device", "/dev/null:/dev/n:rx", "I"}, `--device "/dev/null:/dev/n:rx": permissions "rx"`},
		{[]string{"--device", "/a:/b:r:w", "I"}, `--device "/a:/b:r:w"`},
		{[]string{"--security-opt", "systempaths=unconfined", "I"}, `--security-opt "systempaths=unconfined"`},
		{[]string{"--security-opt", "no-new-privileges=yes", "I"}, `--security-opt "no-new-privileges=yes"`},
		{[]string{"--security-opt", "seccomp=/nonexistent/p.json", "I"}, `--security-opt "seccomp=/nonexistent/p.json"`},
		{[]string{"--security-opt", "seccomp=" + notJSON, "I"}, notJSON + " is not JSON"},
	} {
		_, err := parseRunFlags(t, c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: err = %v, want it to contain %q", c.args, err, c.want)
		}
	}
}
