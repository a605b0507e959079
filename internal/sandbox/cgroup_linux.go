package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ownedControllers are the v1 hierarchies the sandbox creates a cgroup in
// when the placement names none (no resources plugin): enough to freeze,
// account, count pids and enforce the device rules.
var ownedControllers = []string{"freezer", "cpuacct", "memory", "pids", "devices"}

// hierarchy is one mounted cgroup hierarchy and this process's cgroup in it.
type hierarchy struct {
	name  string // mount dir name; "" for v2
	mount string
	own   string // this process's cgroup path in it
	v2    bool
}

func hierarchies() ([]hierarchy, error) {
	own := map[string]string{} // controller list or "" (v2) → path
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) == 3 {
			own[parts[1]] = parts[2]
		}
	}
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer mi.Close()
	var hs []hierarchy
	sc = bufio.NewScanner(mi)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		mnt := pf[4]
		switch qf[0] {
		case "cgroup2":
			if p, ok := own[""]; ok {
				hs = append(hs, hierarchy{mount: mnt, own: p, v2: true})
			}
		case "cgroup":
			opts := strings.Split(qf[2], ",")
			for ctrls, p := range own {
				if ctrls == "" {
					continue
				}
				if !slices.ContainsFunc(strings.Split(ctrls, ","), func(c string) bool { return !slices.Contains(opts, c) }) {
					hs = append(hs, hierarchy{name: filepath.Base(mnt), mount: mnt, own: p})
				}
			}
		}
	}
	return hs, sc.Err()
}

// OpenCgroup resolves a placement's cgroup path in every hierarchy: an
// absolute path is relative to each hierarchy's root, a relative one to this
// process's own cgroup there. With create, directories missing in the
// owned controllers (v1) or the unified hierarchy (pure v2) are made and
// recorded in Created.
func OpenCgroup(path string, create bool) (*Cgroup, error) {
	hs, err := hierarchies()
	if err != nil {
		return nil, fmt.Errorf("read cgroup hierarchies: %w", err)
	}
	hasV1 := slices.ContainsFunc(hs, func(h hierarchy) bool { return !h.v2 })
	cg := &Cgroup{V1: map[string]string{}}
	for _, h := range hs {
		if h.v2 && hasV1 {
			continue // hybrid: the unified hierarchy holds no controllers we use
		}
		dir := filepath.Join(h.mount, path)
		if !filepath.IsAbs(path) {
			dir = filepath.Join(h.mount, h.own, path)
		}
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			owned := slices.ContainsFunc(strings.Split(h.name, ","), func(c string) bool { return slices.Contains(ownedControllers, c) })
			if !create || (!h.v2 && !owned) {
				continue
			}
			if err := mkdirCgroup(dir, cg); err != nil {
				_ = cg.Remove()
				return nil, err
			}
		} else if err != nil {
			return nil, err
		}
		if h.v2 {
			cg.V2 = dir
		} else {
			cg.V1[h.name] = dir
		}
	}
	if len(cg.V1) == 0 && cg.V2 == "" {
		return nil, fmt.Errorf("cgroup %q exists in no hierarchy", path)
	}
	return cg, nil
}

// mkdirCgroup makes dir and its missing parents, recording each.
func mkdirCgroup(dir string, cg *Cgroup) error {
	var missing []string
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
	}
	for _, d := range slices.Backward(missing) {
		if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("create cgroup %s: %w", d, err)
		}
		cg.Created = append(cg.Created, d)
	}
	return nil
}

// Join moves pid into the cgroup in every hierarchy.
func (c *Cgroup) Join(pid int) error {
	for _, dir := range c.dirs() {
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("join cgroup %s: %w", dir, err)
		}
	}
	return nil
}

func (c *Cgroup) dirs() []string {
	var out []string
	for _, k := range sortedKeys(c.V1) {
		out = append(out, c.V1[k])
	}
	if c.V2 != "" {
		out = append(out, c.V2)
	}
	return out
}

// ApplyDevices writes the spec's device rules to the v1 devices hierarchy
// (on v2 they are eBPF programs owned by the resources layer).
func (c *Cgroup) ApplyDevices(rules []specs.LinuxDeviceCgroup) error {
	dir, ok := c.V1["devices"]
	if !ok || len(rules) == 0 {
		return nil
	}
	for _, r := range rules {
		file := "devices.deny"
		if r.Allow {
			file = "devices.allow"
		}
		typ := r.Type
		if typ == "" {
			typ = "a"
		}
		num := func(p *int64) string {
			if p == nil || *p < 0 {
				return "*"
			}
			return strconv.FormatInt(*p, 10)
		}
		access := r.Access
		if access == "" {
			access = "rwm"
		}
		line := fmt.Sprintf("%s %s:%s %s", typ, num(r.Major), num(r.Minor), access)
		if typ == "a" {
			line = "a"
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(line), 0); err != nil {
			return fmt.Errorf("device rule %q in %s: %w", line, file, err)
		}
	}
	return nil
}

// Freeze stops every process in the cgroup and waits until the kernel says
// they are frozen (or 30 s pass).
func (c *Cgroup) Freeze() error { return c.setFrozen(true) }

// Thaw resumes a frozen cgroup.
func (c *Cgroup) Thaw() error { return c.setFrozen(false) }

func (c *Cgroup) setFrozen(frozen bool) error {
	var file, want string
	if dir, ok := c.V1["freezer"]; ok {
		file, want = filepath.Join(dir, "freezer.state"), "THAWED"
		if frozen {
			want = "FROZEN"
		}
	} else if c.V2 != "" {
		file, want = filepath.Join(c.V2, "cgroup.freeze"), "0"
		if frozen {
			want = "1"
		}
	} else {
		return errors.New("the container's cgroup has no freezer")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := os.WriteFile(file, []byte(want), 0); err != nil {
			return fmt.Errorf("write %s: %w", file, err)
		}
		state, err := c.frozenState(file)
		if err != nil {
			return err
		}
		if state == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still %q after 30s", file, state)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *Cgroup) frozenState(file string) (string, error) {
	if c.V2 != "" && filepath.Base(file) == "cgroup.freeze" {
		b, err := os.ReadFile(filepath.Join(c.V2, "cgroup.events"))
		if err != nil {
			return "", err
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "frozen "); ok {
				return v, nil
			}
		}
		return "", nil
	}
	b, err := os.ReadFile(file)
	return strings.TrimSpace(string(b)), err
}

// Frozen reports whether the cgroup is frozen.
func (c *Cgroup) Frozen() bool {
	if dir, ok := c.V1["freezer"]; ok {
		s, _ := c.frozenState(filepath.Join(dir, "freezer.state"))
		return s == "FROZEN"
	}
	if c.V2 != "" {
		s, _ := c.frozenState(filepath.Join(c.V2, "cgroup.freeze"))
		return s == "1"
	}
	return false
}

// Pids lists the processes in the cgroup.
func (c *Cgroup) Pids() []int {
	seen := map[int]bool{}
	var out []int
	for _, dir := range c.dirs() {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil && !seen[pid] {
				seen[pid] = true
				out = append(out, pid)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Kill sends SIGKILL to every process in the cgroup, thawing it first so
// the kill is delivered.
func (c *Cgroup) Kill() {
	for _, pid := range c.Pids() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if c.Frozen() {
		_ = c.Thaw()
	}
}

// Stats reads the cgroup's use now.
func (c *Cgroup) Stats() Stats {
	u := Stats{Time: time.Now()}
	read := func(dir, file string) uint64 {
		b, err := os.ReadFile(filepath.Join(dir, file))
		if err != nil {
			return 0
		}
		v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return v
	}
	if d, ok := c.V1["cpuacct"]; ok {
		u.CPUUsageNanos = read(d, "cpuacct.usage")
	}
	if d, ok := c.V1["memory"]; ok {
		u.MemoryBytes = read(d, "memory.usage_in_bytes")
		u.MemoryPeakBytes = read(d, "memory.max_usage_in_bytes")
	}
	if d, ok := c.V1["pids"]; ok {
		u.Pids = read(d, "pids.current")
	}
	if c.V2 != "" {
		u.MemoryBytes = read(c.V2, "memory.current")
		u.MemoryPeakBytes = read(c.V2, "memory.peak")
		u.Pids = read(c.V2, "pids.current")
		if b, err := os.ReadFile(filepath.Join(c.V2, "cpu.stat")); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if v, ok := strings.CutPrefix(l, "usage_usec "); ok {
					n, _ := strconv.ParseUint(v, 10, 64)
					u.CPUUsageNanos = n * 1000
				}
			}
		}
	}
	if u.Pids == 0 {
		u.Pids = uint64(len(c.Pids()))
	}
	return u
}

// Remove deletes the directories the sandbox created, deepest first,
// retrying while the last processes leave. Removing twice succeeds.
func (c *Cgroup) Remove() error {
	var errs []error
	for _, d := range slices.Backward(c.Created) {
		parent := slices.ContainsFunc(c.Created, func(o string) bool { return strings.HasPrefix(o, d+"/") })
		if parent {
			// Shared with other containers' cgroups: remove it only when it
			// is the last one.
			_ = os.Remove(d)
			continue
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := os.Remove(d)
			if err == nil || errors.Is(err, os.ErrNotExist) {
				break
			}
			if time.Now().After(deadline) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return errors.Join(errs...)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
