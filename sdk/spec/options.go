package spec

import (
	"fmt"
	"math"
	"slices"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/lifecycle"
)

// securityOptions are the --security-opt values Build understands.
type securityOptions struct {
	noNewPrivileges bool
	// seccompUnconfined drops the seccomp filter; seccompProfile, when
	// set, is a moby-format profile (JSON) replacing Docker's default.
	seccompUnconfined bool
	seccompProfile    string
}

// parseSecurityOpt reads Docker's --security-opt values (a seccomp profile
// as its JSON content). AppArmor and SELinux labels are accepted and
// ignored: Berth applies neither. Anything else is an error naming it.
func parseSecurityOpt(opts []string) (securityOptions, error) {
	var out securityOptions
	for _, o := range opts {
		key, val, hasVal := strings.Cut(o, "=")
		if !hasVal {
			// Docker also accepts the old KEY:VALUE form.
			key, val, hasVal = strings.Cut(o, ":")
		}
		switch key {
		case "no-new-privileges":
			switch {
			case !hasVal || val == "true":
				out.noNewPrivileges = true
			case val == "false":
				out.noNewPrivileges = false
			default:
				return out, fmt.Errorf("security-opt %q: no-new-privileges takes true or false", o)
			}
		case "seccomp":
			switch {
			case val == "unconfined":
				out.seccompUnconfined, out.seccompProfile = true, ""
			case strings.HasPrefix(strings.TrimSpace(val), "{"):
				out.seccompUnconfined, out.seccompProfile = false, val
			default:
				return out, fmt.Errorf("security-opt %q: seccomp takes unconfined or a profile's JSON content (the client reads the file)", truncate(o, 80))
			}
		case "apparmor", "label":
			// Accepted for compatibility; the client warns they are ignored.
		default:
			return out, fmt.Errorf("security-opt %q: not one of no-new-privileges, seccomp=…, apparmor=…, label=…", truncate(o, 80))
		}
	}
	return out, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ulimitRlimits turns --ulimit values into OCI rlimits (RLIMIT_<NAME>);
// -1 is unlimited.
func ulimitRlimits(ulimits []lifecycle.Ulimit) ([]specs.POSIXRlimit, error) {
	var out []specs.POSIXRlimit
	for _, u := range ulimits {
		typ := "RLIMIT_" + strings.ToUpper(u.Name)
		if !slices.Contains(rlimitTypes, typ) {
			return nil, fmt.Errorf("ulimit %q: unknown name; want one of %s", u.Name, ulimitNames())
		}
		soft, hard := rlimitValue(u.Soft), rlimitValue(u.Hard)
		if u.Soft < -1 || u.Hard < -1 {
			return nil, fmt.Errorf("ulimit %s=%d:%d: limits are numbers ≥ 0, or -1 for unlimited", u.Name, u.Soft, u.Hard)
		}
		if soft > hard {
			return nil, fmt.Errorf("ulimit %s: soft limit %d is above hard limit %d", u.Name, u.Soft, u.Hard)
		}
		out = append(out, specs.POSIXRlimit{Type: typ, Soft: soft, Hard: hard})
	}
	return out, nil
}

func rlimitValue(v int64) uint64 {
	if v < 0 {
		return math.MaxUint64 // RLIM_INFINITY
	}
	return uint64(v)
}

// UlimitNames are the names --ulimit accepts ("as", "core", … "stack"),
// the rlimits Linux defines without their RLIMIT_ prefix.
func UlimitNames() []string {
	names := make([]string, len(rlimitTypes))
	for i, t := range rlimitTypes {
		names[i] = strings.ToLower(strings.TrimPrefix(t, "RLIMIT_"))
	}
	return names
}

func ulimitNames() string { return strings.Join(UlimitNames(), ", ") }

// mappedDevice resolves a --device mapping against the host: the device
// node's type and numbers, and the container path and permissions with
// Docker's defaults (same path, "rwm").
func mappedDevice(d lifecycle.DeviceMapping) (specs.LinuxDevice, string, error) {
	if !strings.HasPrefix(d.PathOnHost, "/") {
		return specs.LinuxDevice{}, "", fmt.Errorf("device %q: the host path must be absolute", d.PathOnHost)
	}
	dst := d.PathInContainer
	if dst == "" {
		dst = d.PathOnHost
	}
	if !strings.HasPrefix(dst, "/dev/") {
		return specs.LinuxDevice{}, "", fmt.Errorf("device %q: the path in the container %q must be under /dev/", d.PathOnHost, dst)
	}
	perms := d.Permissions
	if perms == "" {
		perms = "rwm"
	}
	if strings.Trim(perms, "rwm") != "" {
		return specs.LinuxDevice{}, "", fmt.Errorf("device %q: permissions %q are not a combination of r, w, m", d.PathOnHost, perms)
	}
	dev, err := hostDevice(d.PathOnHost)
	if err != nil {
		return specs.LinuxDevice{}, "", fmt.Errorf("device %q: %w", d.PathOnHost, err)
	}
	dev.Path = dst
	return dev, perms, nil
}
