package spec

import (
	"runtime"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/lifecycle"
)

// The expectations below are what `docker run` (moby's oci.DefaultSpec and
// daemon/oci_linux.go) puts in config.json for the same image and flags.

var nginx = ImageConfig{
	Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "NGINX_VERSION=1.27.0"},
	Entrypoint: []string{"/docker-entrypoint.sh"},
	Cmd:        []string{"nginx", "-g", "daemon off;"},
	StopSignal: "SIGQUIT",
	OS:         "linux",
}

func TestBuildProcess(t *testing.T) {
	const id = "0123456789abcdef0123"
	tests := []struct {
		name     string
		img      ImageConfig
		cfg      lifecycle.Config
		args     []string
		env      []string
		cwd      string
		hostname string
		user     specs.User
		userAnn  string
		stop     string
	}{
		{
			name:     "image defaults",
			img:      nginx,
			args:     []string{"/docker-entrypoint.sh", "nginx", "-g", "daemon off;"},
			env:      []string{nginx.Env[0], nginx.Env[1], "HOSTNAME=0123456789ab"},
			cwd:      "/",
			hostname: "0123456789ab",
			stop:     "SIGQUIT",
		},
		{
			name:     "cmd replaces the image cmd, keeps its entrypoint",
			img:      nginx,
			cfg:      lifecycle.Config{Cmd: []string{"nginx", "-T"}},
			args:     []string{"/docker-entrypoint.sh", "nginx", "-T"},
			env:      []string{nginx.Env[0], nginx.Env[1], "HOSTNAME=0123456789ab"},
			cwd:      "/",
			hostname: "0123456789ab",
			stop:     "SIGQUIT",
		},
		{
			name:     "entrypoint drops the image cmd",
			img:      nginx,
			cfg:      lifecycle.Config{Entrypoint: []string{"/bin/sh"}, StopSignal: "TERM"},
			args:     []string{"/bin/sh"},
			env:      []string{nginx.Env[0], nginx.Env[1], "HOSTNAME=0123456789ab"},
			cwd:      "/",
			hostname: "0123456789ab",
			stop:     "TERM",
		},
		{
			name: "env override, tty, workdir, hostname, numeric user",
			img:  ImageConfig{Cmd: []string{"sh"}, Env: []string{"A=1", "B=2"}, WorkingDir: "/srv", User: "nobody"},
			cfg: lifecycle.Config{Env: []string{"B=3", "C=4"}, Tty: true, WorkingDir: "/tmp",
				Hostname: "web", User: "1000:1000"},
			args:     []string{"sh"},
			env:      []string{DefaultPath, "A=1", "B=3", "C=4", "HOSTNAME=web", "TERM=xterm"},
			cwd:      "/tmp",
			hostname: "web",
			user:     specs.User{UID: 1000, GID: 1000},
		},
		{
			name:     "user name from the image is resolved by the plugin",
			img:      ImageConfig{Cmd: []string{"sh"}, User: "nginx", WorkingDir: "/srv"},
			args:     []string{"sh"},
			env:      []string{DefaultPath, "HOSTNAME=0123456789ab"},
			cwd:      "/srv",
			hostname: "0123456789ab",
			userAnn:  "nginx",
		},
		{
			name:     "uid without group takes gid from /etc/passwd",
			img:      ImageConfig{Cmd: []string{"sh"}},
			cfg:      lifecycle.Config{User: "33", Network: lifecycle.NetworkOptions{Network: "host"}},
			args:     []string{"sh"},
			env:      []string{DefaultPath},
			cwd:      "/",
			user:     specs.User{UID: 33},
			userAnn:  "33",
			hostname: "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Build(tt.img, tt.cfg, Extra{ContainerID: id})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			p := s.Process
			if !slices.Equal(p.Args, tt.args) {
				t.Errorf("args = %q, want %q", p.Args, tt.args)
			}
			if !slices.Equal(p.Env, tt.env) {
				t.Errorf("env = %q, want %q", p.Env, tt.env)
			}
			if p.Cwd != tt.cwd || s.Hostname != tt.hostname || p.Terminal != tt.cfg.Tty {
				t.Errorf("cwd %q hostname %q terminal %v, want %q %q %v", p.Cwd, s.Hostname, p.Terminal, tt.cwd, tt.hostname, tt.cfg.Tty)
			}
			if p.User.UID != tt.user.UID || p.User.GID != tt.user.GID {
				t.Errorf("user = %+v, want %+v", p.User, tt.user)
			}
			if s.Annotations[AnnotationUser] != tt.userAnn {
				t.Errorf("user annotation = %q, want %q", s.Annotations[AnnotationUser], tt.userAnn)
			}
			if s.Annotations[AnnotationStopSignal] != tt.stop {
				t.Errorf("stop signal = %q, want %q", s.Annotations[AnnotationStopSignal], tt.stop)
			}
			hasNet := slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == specs.NetworkNamespace })
			if hasNet == (tt.cfg.Network.Network == "host") {
				t.Errorf("network namespace present = %v with network %q", hasNet, tt.cfg.Network.Network)
			}
		})
	}
}

func TestBuildDockerDefaults(t *testing.T) {
	s, err := Build(nginx, lifecycle.Config{}, Extra{ContainerID: "abc"})
	if err != nil {
		t.Fatal(err)
	}
	docker := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
		"CAP_KILL", "CAP_AUDIT_WRITE"}
	c := s.Process.Capabilities
	for name, set := range map[string][]string{"bounding": c.Bounding, "effective": c.Effective, "permitted": c.Permitted} {
		if !slices.Equal(set, docker) {
			t.Errorf("%s caps = %q, want Docker's %q", name, set, docker)
		}
	}
	if len(c.Inheritable) != 0 || len(c.Ambient) != 0 {
		t.Errorf("inheritable %q ambient %q, want none (Docker sets none since 20.10)", c.Inheritable, c.Ambient)
	}
	// An explicit 0, never the daemon's inherited (lowered) score.
	if a := s.Process.OOMScoreAdj; a == nil || *a != 0 {
		t.Errorf("process.oomScoreAdj = %v, want an explicit 0", a)
	}
	if s, err := Build(nginx, lifecycle.Config{OOMScoreAdj: 500}, Extra{ContainerID: "abc"}); err != nil || *s.Process.OOMScoreAdj != 500 {
		t.Errorf("--oom-score-adj 500: %v", err)
	}
	if s.Process.NoNewPrivileges {
		t.Error("NoNewPrivileges set by default; Docker leaves it off unless --security-opt no-new-privileges")
	}
	wantMounts := map[string]string{"/proc": "proc", "/dev": "tmpfs", "/dev/pts": "devpts", "/sys": "sysfs",
		"/sys/fs/cgroup": "cgroup", "/dev/mqueue": "mqueue", "/dev/shm": "tmpfs"}
	if len(s.Mounts) != len(wantMounts) {
		t.Errorf("mounts = %+v, want Docker's %d", s.Mounts, len(wantMounts))
	}
	for _, m := range s.Mounts {
		if wantMounts[m.Destination] != m.Type {
			t.Errorf("mount %s type %q, want %q", m.Destination, m.Type, wantMounts[m.Destination])
		}
		if m.Destination == "/sys" && !slices.Contains(m.Options, "ro") {
			t.Errorf("/sys options %q lack ro", m.Options)
		}
	}
	if !slices.Contains(s.Linux.MaskedPaths, "/proc/kcore") || !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
		t.Errorf("masked %q readonly %q lack /proc/kcore or /proc/sys", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
	}
	if d := s.Linux.Resources.Devices; len(d) == 0 || d[0].Allow || d[0].Type != "a" || d[0].Access != "rwm" {
		t.Errorf("device rules %+v do not start with deny-all", d)
	}
	if len(s.Process.Rlimits) != 0 {
		t.Errorf("rlimits %+v, want none (inherited from the runtime, as Docker)", s.Process.Rlimits)
	}
	if s.Root.Readonly {
		t.Error("root read-only by default")
	}
	if runtime.GOOS == "linux" {
		sc := s.Linux.Seccomp
		if sc == nil || sc.DefaultAction != specs.ActErrno {
			t.Fatalf("seccomp = %+v, want Docker's default (SCMP_ACT_ERRNO)", sc)
		}
		// clone3 must fail with ENOSYS (38) so glibc falls back to clone.
		found := false
		for _, r := range sc.Syscalls {
			if slices.Contains(r.Names, "clone3") && r.Action == specs.ActErrno && r.ErrnoRet != nil && *r.ErrnoRet == 38 {
				found = true
			}
			if slices.Contains(r.Names, "keyctl") && r.Action == specs.ActAllow {
				t.Error("keyctl allowed by the default profile")
			}
		}
		if !found {
			t.Error("no clone3 → ENOSYS rule in the default profile")
		}
	}
}

func TestBuildCapabilities(t *testing.T) {
	tests := []struct {
		name     string
		cfg      lifecycle.Config
		has, not []string
		count    int
	}{
		{"drop and add", lifecycle.Config{CapDrop: []string{"net_raw", "CAP_MKNOD"}, CapAdd: []string{"SYS_ADMIN"}},
			[]string{"CAP_SYS_ADMIN", "CAP_CHOWN"}, []string{"CAP_NET_RAW", "CAP_MKNOD"}, 13},
		{"drop all add one", lifecycle.Config{CapDrop: []string{"ALL"}, CapAdd: []string{"chown"}},
			[]string{"CAP_CHOWN"}, []string{"CAP_KILL"}, 1},
		{"add all", lifecycle.Config{CapAdd: []string{"all"}}, []string{"CAP_SYS_ADMIN", "CAP_BPF"}, nil, 41},
		{"privileged", lifecycle.Config{Privileged: true}, []string{"CAP_SYS_ADMIN"}, nil, 41},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Build(nginx, tt.cfg, Extra{})
			if err != nil {
				t.Fatal(err)
			}
			b := s.Process.Capabilities.Bounding
			if len(b) != tt.count {
				t.Errorf("%d caps %q, want %d", len(b), b, tt.count)
			}
			for _, c := range tt.has {
				if !slices.Contains(b, c) {
					t.Errorf("missing %s in %q", c, b)
				}
			}
			for _, c := range tt.not {
				if slices.Contains(b, c) {
					t.Errorf("%s present in %q", c, b)
				}
			}
		})
	}
}

func TestBuildPrivileged(t *testing.T) {
	s, err := Build(nginx, lifecycle.Config{Privileged: true}, Extra{})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 || s.Linux.Seccomp != nil {
		t.Errorf("privileged: masked %q readonly %q seccomp %v, want none", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths, s.Linux.Seccomp != nil)
	}
	for _, m := range s.Mounts {
		if m.Destination == "/sys" && slices.Contains(m.Options, "ro") {
			t.Error("privileged /sys is read-only")
		}
	}
	if d := s.Linux.Resources.Devices; len(d) != 1 || !d[0].Allow {
		t.Errorf("privileged device rules %+v, want allow all", d)
	}
}

func TestBuildMountsDevicesRlimits(t *testing.T) {
	major, minor := int64(10), int64(200)
	s, err := Build(nginx, lifecycle.Config{
		ReadOnlyRootfs: true,
		Mounts: []lifecycle.Mount{
			{Type: "bind", Source: "/srv/data", Destination: "/data", ReadOnly: true},
			{Type: "tmpfs", Destination: "/dev/shm", Options: []string{"size=1m"}},
		},
	}, Extra{
		Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 64, Hard: 128}, {Type: "RLIMIT_NPROC", Soft: 10, Hard: 10}},
		Devices: []specs.LinuxDevice{{Path: "/dev/net/tun", Type: "c", Major: major, Minor: minor}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Root.Readonly {
		t.Error("read-only rootfs not set")
	}
	var data, shm *specs.Mount
	for i := range s.Mounts {
		switch s.Mounts[i].Destination {
		case "/data":
			data = &s.Mounts[i]
		case "/dev/shm":
			if shm != nil {
				t.Error("two /dev/shm mounts: the user's must replace the default")
			}
			shm = &s.Mounts[i]
		}
	}
	if data == nil || data.Type != "bind" || !slices.Equal(data.Options, []string{"rbind", "ro"}) {
		t.Errorf("bind mount = %+v", data)
	}
	if shm == nil || shm.Type != "tmpfs" || !slices.Contains(shm.Options, "size=1m") {
		t.Errorf("tmpfs mount = %+v", shm)
	}
	if len(s.Process.Rlimits) != 2 || s.Process.Rlimits[0].Soft != 64 {
		t.Errorf("rlimits = %+v", s.Process.Rlimits)
	}
	if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/net/tun" {
		t.Errorf("devices = %+v", s.Linux.Devices)
	}
	last := s.Linux.Resources.Devices[len(s.Linux.Resources.Devices)-1]
	if !last.Allow || last.Major == nil || *last.Major != 10 || *last.Minor != 200 {
		t.Errorf("last device rule %+v, want allow 10:200", last)
	}
}

func TestBuildErrorsNameTheInput(t *testing.T) {
	tests := []struct {
		name  string
		img   ImageConfig
		cfg   lifecycle.Config
		extra Extra
		want  string
	}{
		{"no command", ImageConfig{}, lifecycle.Config{Image: "scratch"}, Extra{}, `"scratch" sets no entrypoint or cmd`},
		{"relative workdir", nginx, lifecycle.Config{WorkingDir: "srv"}, Extra{}, `working dir "srv"`},
		{"bad env", nginx, lifecycle.Config{Env: []string{"NOVALUE"}}, Extra{}, `env "NOVALUE"`},
		{"bad user", nginx, lifecycle.Config{User: "web:"}, Extra{}, `user "web:"`},
		{"bad stop signal", nginx, lifecycle.Config{StopSignal: "SIGNOPE"}, Extra{}, `"SIGNOPE"`},
		{"bad cap", nginx, lifecycle.Config{CapAdd: []string{"FLY"}}, Extra{}, `cap-add: unknown capability "FLY"`},
		{"bad mount type", nginx, lifecycle.Config{Mounts: []lifecycle.Mount{{Type: "nfs", Destination: "/x"}}}, Extra{}, `mount 1 (/x): type "nfs"`},
		{"relative bind", nginx, lifecycle.Config{Mounts: []lifecycle.Mount{{Type: "bind", Source: "data", Destination: "/x"}}}, Extra{}, `source "data"`},
		{"bad ulimit", nginx, lifecycle.Config{}, Extra{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_FOO"}}}, `ulimit "RLIMIT_FOO"`},
		{"soft above hard", nginx, lifecycle.Config{}, Extra{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 2, Hard: 1}}}, "soft limit 2 is above hard limit 1"},
		{"device outside /dev", nginx, lifecycle.Config{}, Extra{Devices: []specs.LinuxDevice{{Path: "/tmp/x", Type: "c"}}}, `device "/tmp/x"`},
		{"oom score too low", nginx, lifecycle.Config{OOMScoreAdj: -1001}, Extra{}, "oom score adjustment -1001 is outside -1000..1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Build(tt.img, tt.cfg, tt.extra)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]int{"SIGTERM": 15, "term": 15, "9": 9, "SIGRTMIN+3": 37, "RTMIN": 34, "SIGWINCH": 28} {
		got, err := ParseSignal(in)
		if err != nil || int(got) != want {
			t.Errorf("ParseSignal(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"0", "65", "SIGFOO", "RTMIN+x", ""} {
		if _, err := ParseSignal(bad); err == nil {
			t.Errorf("ParseSignal(%q) accepted", bad)
		}
	}
}
