// Package spec turns an image's config and a user's options into the OCI
// runtime spec every isolation mode consumes, with Docker's defaults: the
// same process, environment, capabilities, mounts, masked and read-only
// paths, device rules, rlimits and seccomp profile `docker run` would give
// the same container.
//
// Build reads no files except the host device nodes --device names (it
// stats them for their numbers): user names
// that need the container's /etc/passwd are carried to the isolation
// plugin in the AnnotationUser annotation and resolved there against the
// rootfs, as Docker resolves them at start.
package spec

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/resources"
)

// Annotations Build sets for the isolation plugin.
const (
	// AnnotationUser carries the user as the image or the user wrote it
	// ("nginx", "1000:staff"), when any part is a name that must be looked
	// up in the container's /etc/passwd or /etc/group. Process.User then
	// holds the numeric parts known without the rootfs.
	AnnotationUser = "org.berth.user"
	// AnnotationStopSignal is the signal that stops the container, as
	// containerd names it.
	AnnotationStopSignal = "org.opencontainers.image.stopSignal"
)

// DefaultPath is Docker's PATH for an image that sets none.
const DefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ImageConfig mirrors the OCI image config's "config" object (the fields a
// runtime spec is built from).
type ImageConfig struct {
	User       string
	Env        []string
	Entrypoint []string
	Cmd        []string
	WorkingDir string
	StopSignal string
	Labels     map[string]string
	// OS is the image platform's OS ("linux", "darwin").
	OS string
}

// Extra are options the user's lifecycle.Config does not carry (yet).
type Extra struct {
	// ContainerID names the container; its first 12 characters are the
	// default hostname, as in Docker.
	ContainerID string
	// Rlimits override the defaults by type (docker run --ulimit).
	Rlimits []specs.POSIXRlimit
	// Devices are host devices to add (docker run --device).
	Devices []specs.LinuxDevice
	// NoNewPrivileges is docker run --security-opt no-new-privileges.
	NoNewPrivileges bool
}

// DefaultCapabilities is Docker's default capability set, in Docker's order.
func DefaultCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
		"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
}

// AllCapabilities lists every capability Linux defines up to
// CAP_CHECKPOINT_RESTORE (40), in number order.
func AllCapabilities() []string {
	return slices.Clone(allCaps)
}

var allCaps = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK",
	"CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
	"CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE",
	"CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG",
	"CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE",
}

// CapabilityNumber returns the kernel's number for a capability name
// ("CAP_CHOWN" → 0), or false for a name Linux does not define.
func CapabilityNumber(name string) (int, bool) {
	i := slices.Index(allCaps, name)
	return i, i >= 0
}

// DefaultMaskedPaths are the paths Docker hides from a non-privileged
// container (a directory gets an empty read-only tmpfs, a file /dev/null).
func DefaultMaskedPaths() []string {
	return []string{
		"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys",
		"/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
		"/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap",
	}
}

// DefaultReadonlyPaths are the paths Docker makes read-only in a
// non-privileged container.
func DefaultReadonlyPaths() []string {
	return []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
}

// DefaultMounts are the filesystems Docker mounts into every container.
func DefaultMounts() []specs.Mount {
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"ro", "nosuid", "noexec", "nodev"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=67108864"}},
	}
}

var rlimitTypes = []string{
	"RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_LOCKS",
	"RLIMIT_MEMLOCK", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_NOFILE", "RLIMIT_NPROC",
	"RLIMIT_RSS", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING", "RLIMIT_STACK",
}

// DefaultRlimits are the limits a container gets when the user sets none:
// none, as in Docker's default spec, so the container inherits the
// runtime's own limits (dockerd's, here the isolation plugin's). Setting
// Docker-on-systemd's 1048576 files would fail where the runtime lacks
// CAP_SYS_RESOURCE.
func DefaultRlimits() []specs.POSIXRlimit { return nil }

// Build returns the runtime spec of a container created from image img with
// the user's cfg. Root.Path is "rootfs" (isolation plugins take the rootfs
// from the snapshot layer's mounts); Linux.CgroupsPath is left for the
// lifecycle to fill from the resource placement. Errors name the option at
// fault.
func Build(img ImageConfig, cfg lifecycle.Config, extra Extra) (*specs.Spec, error) {
	args := processArgs(img, cfg)
	if len(args) == 0 {
		return nil, fmt.Errorf("no command to run: the image %q sets no entrypoint or cmd and none was given", cfg.Image)
	}
	cwd := cfg.WorkingDir
	if cwd == "" {
		cwd = img.WorkingDir
	}
	if cwd == "" {
		cwd = "/"
	}
	if !strings.HasPrefix(cwd, "/") {
		return nil, fmt.Errorf("working dir %q is not an absolute path", cwd)
	}
	hostname := cfg.Hostname
	if hostname == "" && cfg.Network.Network != "host" {
		hostname = extra.ContainerID
		if len(hostname) > 12 {
			hostname = hostname[:12]
		}
	}
	env, err := mergeEnv(img.Env, cfg.Env)
	if err != nil {
		return nil, err
	}
	if hostname != "" {
		env = setEnv(env, "HOSTNAME="+hostname, false)
	}
	if cfg.Tty {
		env = setEnv(env, "TERM=xterm", false)
	}
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "PATH=") }) {
		env = append([]string{DefaultPath}, env...)
	}

	s := &specs.Spec{
		Version:  specs.Version,
		Root:     &specs.Root{Path: "rootfs", Readonly: cfg.ReadOnlyRootfs},
		Hostname: hostname,
		Process: &specs.Process{
			Terminal:        cfg.Tty,
			Args:            args,
			Env:             env,
			Cwd:             cwd,
			NoNewPrivileges: extra.NoNewPrivileges,
		},
		Annotations: map[string]string{},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.CgroupNamespace},
			},
			Resources: &specs.LinuxResources{},
		},
	}
	if cfg.Network.Network != "host" {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
	}
	user := cfg.User
	if user == "" {
		user = img.User
	}
	if err := setUser(s, user); err != nil {
		return nil, err
	}
	// Always set, as Docker does: a container must not inherit the
	// daemon's lowered score (its unit's OOMScoreAdjust).
	if cfg.OOMScoreAdj < -1000 || cfg.OOMScoreAdj > 1000 {
		return nil, fmt.Errorf("oom score adjustment %d is outside -1000..1000", cfg.OOMScoreAdj)
	}
	oomScoreAdj := cfg.OOMScoreAdj
	s.Process.OOMScoreAdj = &oomScoreAdj
	if cfg.Init {
		// docker run --init: the init is PID 1 and runs the command.
		s.Process.Args = append([]string{isolation.InitPath, "--"}, s.Process.Args...)
		s.Annotations[isolation.AnnotationInit] = isolation.InitPath
	}
	if sig := firstNonEmpty(cfg.StopSignal, img.StopSignal); sig != "" {
		if _, err := ParseSignal(sig); err != nil {
			return nil, fmt.Errorf("stop signal: %w", err)
		}
		s.Annotations[AnnotationStopSignal] = sig
	}
	caps, err := capabilities(cfg)
	if err != nil {
		return nil, err
	}
	s.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding: caps, Effective: slices.Clone(caps), Permitted: slices.Clone(caps),
	}
	userRlimits, err := ulimitRlimits(cfg.Ulimits)
	if err != nil {
		return nil, err
	}
	for _, r := range extra.Rlimits {
		if !slices.Contains(rlimitTypes, r.Type) {
			return nil, fmt.Errorf("ulimit %q: not one of %s", r.Type, strings.Join(rlimitTypes, ", "))
		}
		if r.Soft > r.Hard {
			return nil, fmt.Errorf("ulimit %s: soft limit %d is above hard limit %d", r.Type, r.Soft, r.Hard)
		}
	}
	s.Process.Rlimits = mergeRlimits(mergeRlimits(DefaultRlimits(), extra.Rlimits), userRlimits)
	secOpt, err := parseSecurityOpt(cfg.SecurityOpt)
	if err != nil {
		return nil, err
	}
	if secOpt.noNewPrivileges {
		s.Process.NoNewPrivileges = true
	}

	s.Mounts = DefaultMounts()
	if cfg.Privileged {
		// Docker mounts /sys and the cgroup fs read-write for privileged
		// containers.
		for i := range s.Mounts {
			if s.Mounts[i].Destination == "/sys" || s.Mounts[i].Destination == "/sys/fs/cgroup" {
				s.Mounts[i].Options = slices.DeleteFunc(slices.Clone(s.Mounts[i].Options), func(o string) bool { return o == "ro" })
			}
		}
	}
	for i, m := range cfg.Mounts {
		om, err := userMount(m)
		if err != nil {
			return nil, fmt.Errorf("mount %d (%s): %w", i+1, m.Destination, err)
		}
		s.Mounts = slices.DeleteFunc(s.Mounts, func(d specs.Mount) bool { return d.Destination == om.Destination })
		s.Mounts = append(s.Mounts, om)
	}

	rules := resources.DefaultDeviceRules()
	if cfg.Privileged {
		rules = []resources.DeviceRule{{Allow: true, Type: "a", Major: -1, Minor: -1, Access: "rwm"}}
	} else {
		s.Linux.MaskedPaths = DefaultMaskedPaths()
		s.Linux.ReadonlyPaths = DefaultReadonlyPaths()
	}
	for _, d := range extra.Devices {
		if !strings.HasPrefix(d.Path, "/dev/") {
			return nil, fmt.Errorf("device %q: the path in the container must be under /dev/", d.Path)
		}
		if d.Type != "c" && d.Type != "b" && d.Type != "u" && d.Type != "p" {
			return nil, fmt.Errorf("device %q: type %q is not one of c, b, u, p", d.Path, d.Type)
		}
		s.Linux.Devices = append(s.Linux.Devices, d)
		major, minor := d.Major, d.Minor
		rules = append(rules, resources.DeviceRule{Allow: true, Type: d.Type, Major: major, Minor: minor, Access: "rwm"})
	}
	for _, m := range cfg.Devices {
		d, perms, err := mappedDevice(m)
		if err != nil {
			return nil, err
		}
		s.Linux.Devices = slices.DeleteFunc(s.Linux.Devices, func(o specs.LinuxDevice) bool { return o.Path == d.Path })
		s.Linux.Devices = append(s.Linux.Devices, d)
		rules = append(rules, resources.DeviceRule{Allow: true, Type: d.Type, Major: d.Major, Minor: d.Minor, Access: perms})
	}
	for _, r := range rules {
		rule := specs.LinuxDeviceCgroup{Allow: r.Allow, Type: r.Type, Access: r.Access}
		if r.Major >= 0 {
			m := r.Major
			rule.Major = &m
		}
		if r.Minor >= 0 {
			m := r.Minor
			rule.Minor = &m
		}
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, rule)
	}
	switch {
	case secOpt.seccompProfile != "":
		// An explicit profile applies even to a privileged container, as
		// in Docker.
		sc, err := loadSeccomp(secOpt.seccompProfile, s)
		if err != nil {
			return nil, fmt.Errorf("security-opt seccomp profile: %w", err)
		}
		s.Linux.Seccomp = sc
	case !cfg.Privileged && !secOpt.seccompUnconfined:
		sc, err := defaultSeccomp(s)
		if err != nil {
			return nil, fmt.Errorf("default seccomp profile: %w", err)
		}
		s.Linux.Seccomp = sc
	}
	return s, nil
}

// processArgs follows Docker: a user entrypoint replaces the image's and
// drops the image's cmd; a user cmd replaces the image's cmd.
func processArgs(img ImageConfig, cfg lifecycle.Config) []string {
	if len(cfg.Entrypoint) > 0 {
		return slices.Concat(cfg.Entrypoint, cfg.Cmd)
	}
	cmd := img.Cmd
	if len(cfg.Cmd) > 0 {
		cmd = cfg.Cmd
	}
	return slices.Concat(img.Entrypoint, cmd)
}

// mergeEnv appends user over image variables, a user's KEY=V replacing the
// image's KEY. A bare "KEY" without "=" is an error (Docker would copy it
// from the client's environment, which a daemon does not have).
func mergeEnv(image, user []string) ([]string, error) {
	env := slices.Clone(image)
	for _, e := range user {
		if !strings.Contains(e, "=") || strings.HasPrefix(e, "=") {
			return nil, fmt.Errorf("env %q is not KEY=VALUE", e)
		}
		env = setEnv(env, e, true)
	}
	return env, nil
}

// setEnv sets kv in env; an existing key is replaced only when override is
// set.
func setEnv(env []string, kv string, override bool) []string {
	key, _, _ := strings.Cut(kv, "=")
	for i, e := range env {
		if k, _, _ := strings.Cut(e, "="); k == key {
			if override {
				env[i] = kv
			}
			return env
		}
	}
	return append(env, kv)
}

// setUser fills Process.User from "user[:group]" where each part is a name
// or a number. Names are left to the isolation plugin (AnnotationUser).
func setUser(s *specs.Spec, user string) error {
	if user == "" {
		return nil
	}
	name, group, hasGroup := strings.Cut(user, ":")
	if name == "" || (hasGroup && group == "") {
		return fmt.Errorf("user %q is not user[:group]", user)
	}
	needsLookup := false
	if uid, err := strconv.ParseUint(name, 10, 32); err == nil {
		s.Process.User.UID = uint32(uid)
	} else {
		needsLookup = true
	}
	if hasGroup {
		if gid, err := strconv.ParseUint(group, 10, 32); err == nil {
			s.Process.User.GID = uint32(gid)
		} else {
			needsLookup = true
		}
	}
	if needsLookup || !hasGroup {
		// Without a group, the gid and additional groups come from the
		// container's /etc/passwd and /etc/group.
		s.Annotations[AnnotationUser] = user
	}
	return nil
}

// capabilities applies --privileged, --cap-add and --cap-drop to Docker's
// default set, as Docker does: drops first, then adds; "ALL" is every
// capability.
func capabilities(cfg lifecycle.Config) ([]string, error) {
	if cfg.Privileged {
		return AllCapabilities(), nil
	}
	add, err := normalizeCaps("cap-add", cfg.CapAdd)
	if err != nil {
		return nil, err
	}
	drop, err := normalizeCaps("cap-drop", cfg.CapDrop)
	if err != nil {
		return nil, err
	}
	caps := DefaultCapabilities()
	if slices.Contains(drop, "ALL") {
		caps = nil
	} else {
		caps = slices.DeleteFunc(caps, func(c string) bool { return slices.Contains(drop, c) })
	}
	if slices.Contains(add, "ALL") {
		return AllCapabilities(), nil
	}
	for _, c := range add {
		if !slices.Contains(caps, c) {
			caps = append(caps, c)
		}
	}
	return caps, nil
}

func normalizeCaps(flag string, in []string) ([]string, error) {
	var out []string
	for _, c := range in {
		n := strings.ToUpper(strings.TrimSpace(c))
		if n != "ALL" && !strings.HasPrefix(n, "CAP_") {
			n = "CAP_" + n
		}
		if _, ok := CapabilityNumber(n); !ok && n != "ALL" {
			return nil, fmt.Errorf("%s: unknown capability %q", flag, c)
		}
		out = append(out, n)
	}
	return out, nil
}

// userMount turns a -v/--mount/--tmpfs request into a runtime spec mount.
func userMount(m lifecycle.Mount) (specs.Mount, error) {
	if !strings.HasPrefix(m.Destination, "/") {
		return specs.Mount{}, fmt.Errorf("destination %q is not an absolute path", m.Destination)
	}
	ro := "rw"
	if m.ReadOnly {
		ro = "ro"
	}
	switch m.Type {
	case "bind", "volume":
		if !strings.HasPrefix(m.Source, "/") {
			return specs.Mount{}, fmt.Errorf("%s source %q is not an absolute host path", m.Type, m.Source)
		}
		return specs.Mount{Destination: m.Destination, Type: "bind", Source: m.Source,
			Options: slices.Concat([]string{"rbind", ro}, m.Options)}, nil
	case "tmpfs":
		return specs.Mount{Destination: m.Destination, Type: "tmpfs", Source: "tmpfs",
			Options: slices.Concat([]string{"nosuid", "nodev", "noexec", ro}, m.Options)}, nil
	default:
		return specs.Mount{}, fmt.Errorf("type %q is not bind, volume or tmpfs", m.Type)
	}
}

// mergeRlimits replaces defaults by type with the user's limits.
func mergeRlimits(defaults, user []specs.POSIXRlimit) []specs.POSIXRlimit {
	out := slices.Clone(defaults)
	for _, u := range user {
		if i := slices.IndexFunc(out, func(d specs.POSIXRlimit) bool { return d.Type == u.Type }); i >= 0 {
			out[i] = u
		} else {
			out = append(out, u)
		}
	}
	return out
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
