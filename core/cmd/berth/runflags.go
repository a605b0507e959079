package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/spec"
)

// createFlags are the flags `run` and `create` share, named as Docker's.
type createFlags struct {
	name, isolation, platform        string
	env, envFiles, volumes, mounts   []string
	tmpfs, labels, capAdd, capDrop   []string
	interactive, tty, readOnly, priv bool
	workdir, user, entrypoint, host  string
	cpus                             float64
	cpusetCPUs, memory, memoryRes    string
	memorySwap                       string
	cpuShares                        uint64
	pidsLimit                        int64
	deviceReadBPS, deviceWriteBPS    []string
	restart, stopSignal              string
	stopTimeout                      int
	ulimits, devices, securityOpts   []string
	init                             bool
	oomScoreAdj                      int
	net                              networkFlags
	// warnings receives lines about accepted but ignored options (nil is
	// os.Stderr).
	warnings io.Writer
}

func (f *createFlags) register(fs *pflag.FlagSet) {
	fs.SetInterspersed(false)                       // flags after the image belong to the command
	fs.Bool("help", false, "help for this command") // -h is --hostname, as Docker's
	fs.StringVar(&f.name, "name", "", "container name (default: its first 12 ID digits)")
	fs.BoolVarP(&f.interactive, "interactive", "i", false, "keep stdin open and attached")
	fs.BoolVarP(&f.tty, "tty", "t", false, "give the process a terminal")
	fs.StringArrayVarP(&f.env, "env", "e", nil, "environment variable KEY=VALUE, or KEY to pass this shell's value")
	fs.StringArrayVar(&f.envFiles, "env-file", nil, "file of KEY=VALUE lines")
	fs.StringArrayVarP(&f.volumes, "volume", "v", nil, "bind mount HOST-PATH:CONTAINER-PATH[:ro], mount volume NAME:CONTAINER-PATH[:ro] (made on first use), or an anonymous volume at CONTAINER-PATH")
	fs.StringArrayVar(&f.mounts, "mount", nil, "mount type=bind|tmpfs,source=…,target=…[,readonly]")
	fs.StringArrayVar(&f.tmpfs, "tmpfs", nil, "tmpfs mount PATH[:OPTIONS]")
	fs.BoolVar(&f.readOnly, "read-only", false, "mount the root filesystem read-only")
	fs.StringVarP(&f.workdir, "workdir", "w", "", "working directory")
	fs.StringVarP(&f.user, "user", "u", "", "user[:group], as names or ids")
	fs.StringVar(&f.entrypoint, "entrypoint", "", "override the image's entrypoint")
	fs.StringVarP(&f.host, "hostname", "h", "", "hostname")
	fs.Float64Var(&f.cpus, "cpus", 0, "CPU quota in CPUs (1.5 = one and a half)")
	fs.StringVar(&f.cpusetCPUs, "cpuset-cpus", "", "CPUs the container may use (0-1,3)")
	fs.Uint64VarP(&f.cpuShares, "cpu-shares", "c", 0, "relative CPU weight (1024 is the default)")
	fs.StringVarP(&f.memory, "memory", "m", "", "memory limit (e.g. 64m, 1g)")
	fs.StringVar(&f.memoryRes, "memory-reservation", "", "soft memory limit")
	fs.StringVar(&f.memorySwap, "memory-swap", "", "memory plus swap limit; -1 is unlimited swap")
	fs.Int64Var(&f.pidsLimit, "pids-limit", 0, "process and thread limit (-1 unlimited)")
	fs.StringArrayVar(&f.deviceReadBPS, "device-read-bps", nil, "read rate limit DEVICE:RATE (e.g. /dev/sda:1mb)")
	fs.StringArrayVar(&f.deviceWriteBPS, "device-write-bps", nil, "write rate limit DEVICE:RATE")
	fs.StringArrayVar(&f.capAdd, "cap-add", nil, "add a Linux capability")
	fs.StringArrayVar(&f.capDrop, "cap-drop", nil, "drop a Linux capability (ALL for all)")
	fs.BoolVar(&f.priv, "privileged", false, "every capability and device")
	fs.StringVar(&f.restart, "restart", "no", "restart policy: no, on-failure[:N], always, unless-stopped")
	fs.StringArrayVarP(&f.labels, "label", "l", nil, "label KEY=VALUE")
	fs.StringVar(&f.isolation, "isolation", "", "isolation mode: sandbox, vm, hybrid (default: the configured one)")
	fs.StringVar(&f.platform, "platform", "", "platform of the image to pull when missing (os/arch)")
	fs.StringVar(&f.stopSignal, "stop-signal", "", "signal that stops the container (default: the image's, else SIGTERM)")
	fs.IntVar(&f.stopTimeout, "stop-timeout", 0, "seconds between the stop signal and SIGKILL")
	fs.StringArrayVar(&f.ulimits, "ulimit", nil, "resource limit NAME=SOFT[:HARD] (e.g. nofile=1024:2048; -1 is unlimited)")
	fs.StringArrayVar(&f.devices, "device", nil, "host device HOST[:CONTAINER[:PERMS]] (PERMS from rwm)")
	fs.BoolVar(&f.init, "init", false, "run Berth's init as PID 1: it forwards signals to the command and reaps zombies")
	fs.IntVar(&f.oomScoreAdj, "oom-score-adj", 0, "OOM killer score adjustment of the container's processes (-1000 to 1000)")
	fs.StringArrayVar(&f.securityOpts, "security-opt", nil, "no-new-privileges[=true|false], seccomp=unconfined|PROFILE.json (apparmor=, label= are ignored)")
	f.net.register(fs)
}

// config builds the lifecycle config for image and command.
func (f *createFlags) config(image string, cmd []string) (lifecycle.Config, error) {
	cfg := lifecycle.Config{
		Image: image, Isolation: f.isolation, Cmd: cmd, User: f.user, WorkingDir: f.workdir,
		Hostname: f.host, Tty: f.tty, OpenStdin: f.interactive, ReadOnlyRootfs: f.readOnly,
		Privileged: f.priv, CapAdd: f.capAdd, CapDrop: f.capDrop, StopSignal: f.stopSignal,
		StopTimeout: time.Duration(f.stopTimeout) * time.Second, Init: f.init, OOMScoreAdj: f.oomScoreAdj,
	}
	if f.entrypoint != "" {
		cfg.Entrypoint = []string{f.entrypoint}
	}
	var err error
	if cfg.Env, err = parseEnv(f.envFiles, f.env); err != nil {
		return cfg, err
	}
	if len(f.labels) > 0 {
		cfg.Labels = map[string]string{}
		for _, l := range f.labels {
			k, v, _ := strings.Cut(l, "=")
			if k == "" {
				return cfg, fmt.Errorf("--label %q: want KEY=VALUE", l)
			}
			cfg.Labels[k] = v
		}
	}
	if cfg.Mounts, err = parseMounts(f.volumes, f.mounts, f.tmpfs); err != nil {
		return cfg, err
	}
	if cfg.Restart, err = parseRestart(f.restart); err != nil {
		return cfg, err
	}
	l := &cfg.Limits
	l.CPUs, l.CPUSetCPUs, l.CPUShares, l.Pids = f.cpus, f.cpusetCPUs, f.cpuShares, f.pidsLimit
	if f.cpus < 0 {
		return cfg, fmt.Errorf("--cpus %v: must not be negative", f.cpus)
	}
	if l.MemoryBytes, err = parseBytesFlag("memory", f.memory); err != nil {
		return cfg, err
	}
	if l.MemorySoftBytes, err = parseBytesFlag("memory-reservation", f.memoryRes); err != nil {
		return cfg, err
	}
	switch f.memorySwap {
	case "":
	case "-1":
		l.SwapBytes = -1
	default:
		total, err := parseBytesFlag("memory-swap", f.memorySwap)
		if err != nil {
			return cfg, err
		}
		if l.MemoryBytes == 0 || total < l.MemoryBytes {
			return cfg, fmt.Errorf("--memory-swap %s: needs --memory, and must be at least as large", f.memorySwap)
		}
		// Docker's --memory-swap counts memory and swap; Limits counts the
		// swap beyond memory, where 0 is Docker's default (as much again).
		if total == l.MemoryBytes {
			return cfg, fmt.Errorf("--memory-swap %s equal to --memory (no swap) cannot be expressed yet: the resources contract reads 0 swap as Docker's default", f.memorySwap)
		}
		l.SwapBytes = total - l.MemoryBytes
	}
	if l.IODevice, l.IOReadBPS, err = parseDeviceRate("device-read-bps", f.deviceReadBPS, ""); err != nil {
		return cfg, err
	}
	if l.IODevice, l.IOWriteBPS, err = parseDeviceRate("device-write-bps", f.deviceWriteBPS, l.IODevice); err != nil {
		return cfg, err
	}
	if cfg.Ulimits, err = parseUlimits(f.ulimits); err != nil {
		return cfg, err
	}
	if cfg.Devices, err = parseDevices(f.devices); err != nil {
		return cfg, err
	}
	warnings := f.warnings
	if warnings == nil {
		warnings = os.Stderr
	}
	if cfg.SecurityOpt, err = parseSecurityOpts(f.securityOpts, warnings); err != nil {
		return cfg, err
	}
	if cfg.Network, err = f.net.options(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// parseUlimits reads NAME=SOFT[:HARD] (Docker's syntax; HARD defaults to
// SOFT; -1 or "unlimited" is no limit).
func parseUlimits(vals []string) ([]lifecycle.Ulimit, error) {
	var out []lifecycle.Ulimit
	for _, v := range vals {
		name, limits, ok := strings.Cut(v, "=")
		if !ok || name == "" || limits == "" {
			return nil, fmt.Errorf("--ulimit %q: want NAME=SOFT[:HARD] like nofile=1024:2048", v)
		}
		if !slices.Contains(spec.UlimitNames(), name) {
			return nil, fmt.Errorf("--ulimit %q: unknown name %q; want one of %s", v, name, strings.Join(spec.UlimitNames(), ", "))
		}
		softS, hardS, hasHard := strings.Cut(limits, ":")
		if !hasHard {
			hardS = softS
		}
		soft, err1 := parseLimit(softS)
		hard, err2 := parseLimit(hardS)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("--ulimit %q: limits are numbers ≥ 0, or -1/unlimited", v)
		}
		if hard != -1 && (soft == -1 || soft > hard) {
			return nil, fmt.Errorf("--ulimit %q: the soft limit is above the hard limit", v)
		}
		if i := slices.IndexFunc(out, func(u lifecycle.Ulimit) bool { return u.Name == name }); i >= 0 {
			out = slices.Delete(out, i, i+1)
		}
		out = append(out, lifecycle.Ulimit{Name: name, Soft: soft, Hard: hard})
	}
	return out, nil
}

func parseLimit(s string) (int64, error) {
	if s == "unlimited" || s == "-1" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%q is not a limit", s)
	}
	return n, nil
}

// parseDevices reads HOST[:CONTAINER[:PERMS]] (Docker's syntax: a second
// part made of r, w, m alone is PERMS; the container path defaults to the
// host path and PERMS to rwm).
func parseDevices(vals []string) ([]lifecycle.DeviceMapping, error) {
	var out []lifecycle.DeviceMapping
	for _, v := range vals {
		parts := strings.Split(v, ":")
		d := lifecycle.DeviceMapping{PathOnHost: parts[0], Permissions: "rwm"}
		switch len(parts) {
		case 1:
		case 2:
			if isDevicePerms(parts[1]) {
				d.Permissions = parts[1]
			} else {
				d.PathInContainer = parts[1]
			}
		case 3:
			d.PathInContainer, d.Permissions = parts[1], parts[2]
		default:
			return nil, fmt.Errorf("--device %q: want HOST[:CONTAINER[:PERMS]]", v)
		}
		if d.PathInContainer == "" {
			d.PathInContainer = d.PathOnHost
		}
		if !filepath.IsAbs(d.PathOnHost) || !filepath.IsAbs(d.PathInContainer) {
			return nil, fmt.Errorf("--device %q: the host and container paths must be absolute", v)
		}
		if !isDevicePerms(d.Permissions) {
			return nil, fmt.Errorf("--device %q: permissions %q are not a combination of r, w, m", v, d.Permissions)
		}
		out = append(out, d)
	}
	return out, nil
}

func isDevicePerms(s string) bool {
	return s != "" && len(s) <= 3 && strings.Trim(s, "rwm") == ""
}

// parseSecurityOpts checks --security-opt values and reads a seccomp
// profile file into its content ("seccomp=<json>"): the daemon reads no
// client files. apparmor= and label= are passed on with a warning line.
func parseSecurityOpts(vals []string, warnings io.Writer) ([]string, error) {
	var out []string
	for _, v := range vals {
		key, val, hasVal := strings.Cut(v, "=")
		switch key {
		case "no-new-privileges":
			if hasVal && val != "true" && val != "false" {
				return nil, fmt.Errorf("--security-opt %q: no-new-privileges takes true or false", v)
			}
		case "seccomp":
			if val == "" {
				return nil, fmt.Errorf("--security-opt %q: want seccomp=unconfined or seccomp=PROFILE.json", v)
			}
			if val != "unconfined" {
				body, err := os.ReadFile(val)
				if err != nil {
					return nil, fmt.Errorf("--security-opt %q: %w", v, err)
				}
				if !json.Valid(body) {
					return nil, fmt.Errorf("--security-opt %q: %s is not JSON (want a seccomp profile in Docker's format)", v, val)
				}
				v = "seccomp=" + string(body)
			}
		case "apparmor", "label":
			fmt.Fprintf(warnings, "WARNING: --security-opt %s ignored: Berth applies no AppArmor or SELinux profiles\n", v)
		default:
			return nil, fmt.Errorf("--security-opt %q: want no-new-privileges[=true|false], seccomp=unconfined|PROFILE.json, apparmor=… or label=…", v)
		}
		out = append(out, v)
	}
	return out, nil
}

// parseEnv reads env files, then -e values; KEY alone takes this process's
// value (and is skipped when unset, as Docker).
func parseEnv(files, vals []string) ([]string, error) {
	var env []string
	add := func(v, where string) error {
		k, _, hasValue := strings.Cut(v, "=")
		if k == "" {
			return fmt.Errorf("%s: %q is not KEY=VALUE", where, v)
		}
		if !hasValue {
			val, ok := os.LookupEnv(k)
			if !ok {
				return nil
			}
			v = k + "=" + val
		}
		env = append(env, v)
		return nil
	}
	for _, file := range files {
		fh, err := os.Open(file)
		if err != nil {
			return nil, fmt.Errorf("--env-file: %w", err)
		}
		sc := bufio.NewScanner(fh)
		n := 0
		for sc.Scan() {
			n++
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if err := add(line, fmt.Sprintf("--env-file %s:%d", file, n)); err != nil {
				fh.Close()
				return nil, err
			}
		}
		err = sc.Err()
		fh.Close()
		if err != nil {
			return nil, fmt.Errorf("--env-file %s: %w", file, err)
		}
	}
	for _, v := range vals {
		if err := add(v, "-e"); err != nil {
			return nil, err
		}
	}
	return env, nil
}

// parseMounts reads -v, --mount and --tmpfs.
func parseMounts(volumes, mounts, tmpfs []string) ([]lifecycle.Mount, error) {
	var out []lifecycle.Mount
	for _, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) == 1 && strings.HasPrefix(v, "/") { // an anonymous volume
			out = append(out, lifecycle.Mount{Type: "volume", Destination: v})
			continue
		}
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || !strings.HasPrefix(parts[1], "/") {
			return nil, fmt.Errorf("-v %q: want HOST-PATH:CONTAINER-PATH[:ro|rw] (the container path absolute)", v)
		}
		m := lifecycle.Mount{Type: "bind", Source: parts[0], Destination: parts[1]}
		if !filepath.IsAbs(parts[0]) {
			if strings.Contains(parts[0], "/") || strings.HasPrefix(parts[0], ".") { // a relative path, not a volume name
				return nil, fmt.Errorf("-v %q: the host path must be absolute", v)
			}
			m.Type = "volume"
		}
		if len(parts) == 3 {
			for _, o := range strings.Split(parts[2], ",") {
				switch o {
				case "ro":
					m.ReadOnly = true
				case "rw":
				default:
					m.Options = append(m.Options, o)
				}
			}
		}
		out = append(out, m)
	}
	for _, s := range mounts {
		m := lifecycle.Mount{Type: "volume"}
		for _, kv := range strings.Split(s, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "type":
				m.Type = v
			case "source", "src":
				m.Source = v
			case "target", "destination", "dst":
				m.Destination = v
			case "readonly", "ro":
				m.ReadOnly = v == "" || v == "true" || v == "1"
			default:
				m.Options = append(m.Options, kv)
			}
		}
		if m.Destination == "" || !strings.HasPrefix(m.Destination, "/") {
			return nil, fmt.Errorf("--mount %q: needs an absolute target=", s)
		}
		if m.Type != "bind" && m.Type != "volume" && m.Type != "tmpfs" {
			return nil, fmt.Errorf("--mount %q: type %q is not bind, volume or tmpfs", s, m.Type)
		}
		if m.Type == "bind" && !filepath.IsAbs(m.Source) {
			return nil, fmt.Errorf("--mount %q: a bind needs an absolute source=", s)
		}
		out = append(out, m)
	}
	for _, t := range tmpfs {
		dst, opts, _ := strings.Cut(t, ":")
		if !strings.HasPrefix(dst, "/") {
			return nil, fmt.Errorf("--tmpfs %q: want an absolute PATH[:OPTIONS]", t)
		}
		m := lifecycle.Mount{Type: "tmpfs", Source: "tmpfs", Destination: dst}
		if opts != "" {
			m.Options = strings.Split(opts, ",")
		}
		out = append(out, m)
	}
	return out, nil
}

// parseRestart reads no, on-failure[:N], always, unless-stopped.
func parseRestart(s string) (lifecycle.RestartPolicy, error) {
	name, max, hasMax := strings.Cut(s, ":")
	p := lifecycle.RestartPolicy{Name: name}
	switch name {
	case "", "no":
		p.Name = "no"
	case "on-failure":
		if hasMax {
			n, err := strconv.Atoi(max)
			if err != nil || n < 0 {
				return p, fmt.Errorf("--restart %q: the retry count must be a number ≥ 0", s)
			}
			p.MaxRetries = n
		}
		return p, nil
	case "always", "unless-stopped":
	default:
		return p, fmt.Errorf("--restart %q: want no, on-failure[:N], always or unless-stopped", s)
	}
	if hasMax {
		return p, fmt.Errorf("--restart %q: only on-failure takes a retry count", s)
	}
	return p, nil
}

// parseBytes reads 512, 64k, 64m, 1g, 1.5g (binary units, as Docker).
func parseBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(t, "b")
	if strings.HasSuffix(t, "i") {
		t = strings.TrimSuffix(t, "i")
	}
	mult := float64(1)
	if n := len(t); n > 0 {
		switch t[n-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:n-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a size like 512, 64k, 64m or 1g", s)
	}
	return int64(v * mult), nil
}

func parseBytesFlag(flag, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	n, err := parseBytes(s)
	if err != nil {
		return 0, fmt.Errorf("--%s: %w", flag, err)
	}
	return n, nil
}

// parseDeviceRate reads DEVICE:RATE; the resources contract limits one
// device, so every rate must name the same one.
func parseDeviceRate(flag string, vals []string, device string) (string, uint64, error) {
	var rate uint64
	for _, v := range vals {
		i := strings.LastIndex(v, ":")
		if i <= 0 {
			return "", 0, fmt.Errorf("--%s %q: want DEVICE:RATE like /dev/sda:1mb", flag, v)
		}
		dev := v[:i]
		if device != "" && dev != device {
			return "", 0, fmt.Errorf("--%s %q: one device only (already %s)", flag, v, device)
		}
		n, err := parseBytes(v[i+1:])
		if err != nil {
			return "", 0, fmt.Errorf("--%s %q: %w", flag, v, err)
		}
		device, rate = dev, uint64(n)
	}
	return device, rate, nil
}
