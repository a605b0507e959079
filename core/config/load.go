package config

import (
	"fmt"
	"io"
	"math/big"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/zclconf/go-cty/cty"

	"github.com/berth-dev/berth/internal/netdp"
)

// Options change what a Loader sees of its environment; the zero value uses
// the real process environment and platform.
type Options struct {
	Env     map[string]string // nil: os.Environ()
	OS      string            // "": runtime.GOOS; the platform variable
	Arch    string            // "": runtime.GOARCH; the arch variable
	BaseDir string            // "": the directory of the file; relative paths resolve here
}

// Loader parses config files and keeps their sources for snippet-rich
// diagnostics. A Loader is not safe for concurrent use.
type Loader struct {
	opts   Options
	parser *hclparse.Parser
}

// NewLoader returns a Loader with the given options.
func NewLoader(opts Options) *Loader {
	return &Loader{opts: opts, parser: hclparse.NewParser()}
}

// Load reads and checks the config file at path with default Options.
func Load(path string) (*Config, hcl.Diagnostics) {
	return NewLoader(Options{}).LoadFile(path)
}

// LoadFile reads and checks the config file at path. The Config is nil when
// the diagnostics hold an error; warnings may come with a Config.
func (l *Loader) LoadFile(path string) (*Config, hcl.Diagnostics) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Cannot read config file",
			Detail:   fmt.Sprintf("Cannot read %s: %v.", path, err),
			Subject:  fileStart(path),
		}}
	}
	return l.Parse(src, path)
}

// Parse checks src as the contents of the config file filename (used in
// diagnostics and, unless Options.BaseDir is set, to resolve relative paths).
func (l *Loader) Parse(src []byte, filename string) (*Config, hcl.Diagnostics) {
	f, diags := l.parser.ParseHCL(src, filename)
	if diags.HasErrors() {
		return nil, ensureRanges(diags, filename)
	}
	base := l.opts.BaseDir
	if base == "" {
		base = filepath.Dir(filename)
	}
	if abs, err := filepath.Abs(base); err == nil {
		base = abs
	}
	d := &decoder{ctx: NewEvalContext(l.opts), base: base}
	cfg := d.decode(f.Body, filename)
	diags = ensureRanges(append(diags, d.diags...), filename)
	if diags.HasErrors() {
		return nil, diags
	}
	return cfg, diags
}

// Files returns the sources parsed so far, keyed by file name, as
// hcl.NewDiagnosticTextWriter wants them.
func (l *Loader) Files() map[string]*hcl.File { return l.parser.Files() }

// WriteDiagnostics writes diags for humans, with source snippets, wrapped
// at width columns (0 = no wrapping), in color if color is set.
func (l *Loader) WriteDiagnostics(w io.Writer, diags hcl.Diagnostics, width uint, color bool) error {
	return hcl.NewDiagnosticTextWriter(w, l.Files(), width, color).WriteDiagnostics(diags)
}

// ReservedAttributes are the envelope attributes of every plugin block; a
// plugin's schema cannot use these names.
var ReservedAttributes = []string{"enabled", "default", "path", "sha256", "start_timeout", "snapshotter"}

var (
	nameRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`)
	sha256RE = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
)

const maxNameLen = 32

type decoder struct {
	ctx   *hcl.EvalContext
	base  string
	diags hcl.Diagnostics
}

// entry is a decoded plugin with the ranges later checks point at.
type entry struct {
	p     *Plugin
	attrs hcl.Attributes // the envelope attributes present
}

func (d *decoder) errorf(subject hcl.Range, summary, format string, args ...any) {
	d.diags = append(d.diags, &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  summary,
		Detail:   fmt.Sprintf(format, args...),
		Subject:  subject.Ptr(),
	})
}

func (d *decoder) decode(body hcl.Body, filename string) *Config {
	content, diags := body.Content(rootSchema)
	d.diags = append(d.diags, diags...)
	var berth *hcl.Block
	var plugins []*hcl.Block
	for _, b := range content.Blocks {
		switch b.Type {
		case "berth":
			if berth != nil {
				d.errorf(b.DefRange, "Duplicate berth block", "The berth block is already defined at %s; merge the two.", berth.DefRange)
				continue
			}
			berth = b
		case "plugin":
			plugins = append(plugins, b)
		}
	}
	cfg := &Config{Filename: filename, Berth: d.berth(berth, filename)}

	var entries []*entry
	seen := map[string]*entry{}
	for _, b := range plugins {
		e := d.plugin(b)
		key := string(e.p.Layer) + "\x00" + e.p.Name
		if prev, dup := seen[key]; dup {
			d.errorf(hcl.RangeBetween(b.LabelRanges[0], b.LabelRanges[1]), "Duplicate plugin block",
				"%s is already declared at %s; each plugin appears once (use enabled = <condition> or conditional values for per-platform settings).",
				e.p, prev.p.DeclRange)
			continue
		}
		seen[key] = e
		entries = append(entries, e)
		if e.p.Enabled {
			cfg.Plugins = append(cfg.Plugins, e.p)
		} else {
			cfg.Disabled = append(cfg.Disabled, e.p)
		}
	}
	d.checkDefaults(entries)
	d.checkSnapshotters(cfg, entries)
	return cfg
}

func (d *decoder) berth(b *hcl.Block, filename string) Berth {
	out := Berth{
		StateDir:        DefaultStateDir,
		RuntimeDir:      defaultRuntimeDir(d.ctx),
		PluginDirs:      slices.Clone(DefaultPluginDirs),
		LogLevel:        DefaultLogLevel,
		PullParallelism: DefaultPullParallelism,
		DefRange:        *fileStart(filename),
	}
	subject := out.DefRange // where a runtime_dir warning points
	if b != nil {
		out.DefRange = b.DefRange
		subject = b.DefRange
		content, diags := b.Body.Content(berthSchema)
		d.diags = append(d.diags, diags...)
		attrs := content.Attributes
		if v, ok := d.str(attrs["state_dir"], true); ok {
			out.StateDir = v
		}
		if v, ok := d.str(attrs["runtime_dir"], true); ok {
			out.RuntimeDir = v
			subject = attrs["runtime_dir"].Expr.Range()
		}
		if a := attrs["plugin_dirs"]; a != nil {
			if v, ok := d.strList(a); ok {
				out.PluginDirs = v
			}
		}
		if v, ok := d.str(attrs["log_level"], false); ok {
			out.LogLevel = strings.ToLower(strings.TrimSpace(v))
			if hclog.LevelFromString(out.LogLevel) == hclog.NoLevel {
				d.errorf(attrs["log_level"].Expr.Range(), "Invalid log level",
					"log_level %q is not one of trace, debug, info, warn, error, off.", v)
			}
		}
		if v, ok := d.str(attrs["log_file"], false); ok {
			out.LogFile = v
		}
		if a := attrs["insecure_registries"]; a != nil {
			if v, ok := d.strList(a); ok {
				out.InsecureRegistries = v
			}
		}
		if a := attrs["dns_upstreams"]; a != nil {
			if v, ok := d.strList(a); ok {
				for _, u := range v {
					hp, err := dnsUpstream(u)
					if err != nil {
						d.errorf(a.Expr.Range(), "Invalid dns_upstreams", "%v", err)
						continue
					}
					out.DNSUpstreams = append(out.DNSUpstreams, hp)
				}
			}
		}
		if v, ok := d.str(attrs["default_bridge"], false); ok {
			if !bridgeNameRE.MatchString(v) {
				d.errorf(attrs["default_bridge"].Expr.Range(), "Invalid default_bridge",
					"default_bridge %q is not an interface name (1-15 letters, digits, '_', '.', '-').", v)
			} else {
				out.DefaultBridge = v
			}
		}
		if v, ok := d.str(attrs["default_subnet"], false); ok {
			if p, err := netip.ParsePrefix(v); err != nil || !p.Addr().Is4() || p.Masked() != p || p.Bits() < 8 || p.Bits() > 30 {
				d.errorf(attrs["default_subnet"].Expr.Range(), "Invalid default_subnet",
					"default_subnet %q is not an IPv4 CIDR prefix from /8 to /30 without host bits (like 10.88.0.0/16).", v)
			} else {
				out.DefaultSubnet = v
			}
		}
		if v, ok := d.str(attrs["firewall"], false); ok {
			if err := netdp.CheckFirewall(v); err != nil {
				d.errorf(attrs["firewall"].Expr.Range(), "Invalid firewall", "%v.", err)
			} else {
				out.Firewall = v
			}
		}
		if v, ok := d.str(attrs["network_datapath"], false); ok {
			switch v {
			case "auto", "kernel", "user":
				out.NetworkDatapath = v
			default:
				d.errorf(attrs["network_datapath"].Expr.Range(), "Invalid network_datapath",
					"network_datapath %q: want \"auto\", \"kernel\" or \"user\".", v)
			}
		}
		if a := attrs["pull_parallelism"]; a != nil {
			if v, ok := d.value(a, cty.Number); ok {
				n, acc := v.AsBigFloat().Int64()
				if acc != big.Exact || n < 1 || n > MaxPullParallelism {
					d.errorf(a.Expr.Range(), "Invalid pull_parallelism",
						"pull_parallelism must be a whole number from 1 to %d, got %s.", MaxPullParallelism, v.AsBigFloat().Text('g', -1))
				} else {
					out.PullParallelism = int(n)
				}
			}
		}
	}
	out.StateDir = d.abs(out.StateDir)
	out.RuntimeDir = d.abs(out.RuntimeDir)
	for i, dir := range out.PluginDirs {
		out.PluginDirs[i] = d.abs(dir)
	}
	if out.LogFile == "" {
		out.LogFile = filepath.Join(out.StateDir, "berthd.log")
	}
	out.LogFile = d.abs(out.LogFile)
	if n := len(out.RuntimeDir); n > MaxRuntimeDirLen {
		d.diags = append(d.diags, &hcl.Diagnostic{
			Severity: hcl.DiagWarning,
			Summary:  "Long runtime_dir",
			Detail: fmt.Sprintf("runtime_dir %q is %d bytes; unix socket paths under it may pass the 104-byte macOS limit. Use a directory of at most %d bytes.",
				out.RuntimeDir, n, MaxRuntimeDirLen),
			Subject: subject.Ptr(),
		})
	}
	return out
}

func (d *decoder) plugin(b *hcl.Block) *entry {
	layer, name := b.Labels[0], b.Labels[1]
	layerRange, nameRange := b.LabelRanges[0], b.LabelRanges[1]
	p := &Plugin{Layer: Layer(layer), Name: name, Enabled: true, StartTimeout: DefaultStartTimeout,
		DeclRange: hcl.RangeBetween(b.TypeRange, nameRange), ctx: d.ctx}
	e := &entry{p: p}
	if !slices.Contains(Layers, p.Layer) {
		detail := fmt.Sprintf("%q is not a plugin layer; use one of resources, isolation, snapshot, lifecycle, api.", layer)
		if s := suggest(layer, layerNames()); s != "" {
			detail = fmt.Sprintf("%q is not a plugin layer. Did you mean %q?", layer, s)
		}
		d.errorf(layerRange, "Unknown plugin layer", "%s", detail)
	}
	if !nameRE.MatchString(name) || len(name) > maxNameLen {
		d.errorf(nameRange, "Invalid plugin name",
			"%q is not a valid plugin name: use lower-case letters, digits, '-', '_' and '.', starting with a letter or digit, at most %d bytes.", name, maxNameLen)
	}

	content, remain, diags := b.Body.PartialContent(envelopeSchema)
	d.diags = append(d.diags, wrapDiags(p, diags)...)
	p.Body = remain
	attrs := content.Attributes
	e.attrs = attrs
	inPlugin := func(a *hcl.Attribute, summary, format string, args ...any) {
		d.errorf(a.Expr.Range(), summary, "in %s: %s", p, fmt.Sprintf(format, args...))
	}
	pd := &decoder{ctx: d.ctx, base: d.base}
	if v, ok := pd.boolean(attrs["enabled"]); ok {
		p.Enabled = v
	}
	if v, ok := pd.boolean(attrs["default"]); ok {
		p.Default = v
	}
	if a := attrs["path"]; a != nil {
		if v, ok := pd.str(a, true); ok {
			p.Path = d.abs(v)
		}
	}
	if a := attrs["sha256"]; a != nil {
		if v, ok := pd.str(a, false); ok {
			if !sha256RE.MatchString(v) {
				inPlugin(a, "Invalid sha256", "sha256 must be 64 hexadecimal digits (the output of `sha256sum %s`), got %q.", p.BinaryName(), v)
			} else {
				p.SHA256 = strings.ToLower(v)
			}
		}
	}
	if a := attrs["start_timeout"]; a != nil {
		if v, ok := pd.str(a, false); ok {
			dur, err := time.ParseDuration(v)
			switch {
			case err != nil:
				inPlugin(a, "Invalid duration", "start_timeout %q is not a duration; write it like \"30s\", \"1m30s\" or \"500ms\".", v)
			case dur <= 0:
				inPlugin(a, "Invalid duration", "start_timeout must be positive, got %q.", v)
			default:
				p.StartTimeout = dur
			}
		}
	}
	if a := attrs["snapshotter"]; a != nil {
		if p.Layer != LayerIsolation {
			d.errorf(a.Range, "Misplaced snapshotter", "in %s: snapshotter binds a snapshot plugin to an isolation mode and is only allowed in plugin \"isolation\" blocks; remove it here.", p)
		} else if v, ok := pd.str(a, true); ok {
			p.Snapshotter = v
		}
	}
	d.diags = append(d.diags, wrapDiags(p, pd.diags)...)
	return e
}

func (d *decoder) checkDefaults(entries []*entry) {
	first := map[Layer]*entry{}
	for _, e := range entries {
		if !e.p.Enabled || !e.p.Default {
			continue
		}
		if prev, ok := first[e.p.Layer]; ok {
			d.errorf(e.attrs["default"].Range, "Two default plugins",
				"in %s: %s at %s is already the default of layer %q; at most one enabled plugin per layer may say default = true.",
				e.p, prev.p, prev.attrs["default"].Range, e.p.Layer)
			continue
		}
		first[e.p.Layer] = e
	}
}

func (d *decoder) checkSnapshotters(cfg *Config, entries []*entry) {
	var enabled []string
	for _, p := range cfg.Layer(LayerSnapshot) {
		enabled = append(enabled, p.Name)
	}
	list := "none is enabled"
	if len(enabled) > 0 {
		list = "enabled ones: " + strings.Join(enabled, ", ")
	}
	for _, e := range entries {
		p := e.p
		if !p.Enabled || p.Layer != LayerIsolation {
			continue
		}
		if p.Snapshotter == "" {
			if len(enabled) > 1 && cfg.Default(LayerSnapshot) == nil {
				d.errorf(p.DeclRange, "Ambiguous snapshotter",
					"in %s: several snapshot plugins are enabled (%s) and none is the default; set snapshotter = \"<name>\" here or default = true in one of them.",
					p, strings.Join(enabled, ", "))
			}
			continue
		}
		if cfg.Lookup(LayerSnapshot, p.Snapshotter) != nil {
			continue
		}
		why := "no such plugin block exists"
		for _, other := range cfg.Disabled {
			if other.Layer == LayerSnapshot && other.Name == p.Snapshotter {
				why = "that plugin is disabled (enabled evaluates to false)"
			}
		}
		detail := fmt.Sprintf("snapshotter %q names no enabled plugin \"snapshot\" %q: %s (%s).", p.Snapshotter, p.Snapshotter, why, list)
		if s := suggest(p.Snapshotter, enabled); s != "" {
			detail += fmt.Sprintf(" Did you mean %q?", s)
		}
		d.errorf(e.attrs["snapshotter"].Expr.Range(), "Unknown snapshotter", "in %s: %s", p, detail)
	}
}

// abs resolves a relative path against the config file's directory.
func (d *decoder) abs(path string) string {
	if path == "" || filepath.IsAbs(path) {
		return filepath.Clean(path)
	}
	return filepath.Join(d.base, path)
}

func defaultRuntimeDir(ctx *hcl.EvalContext) string {
	if ctx.Variables["platform"].AsString() == "darwin" {
		return "/var/run/berth"
	}
	return "/run/berth"
}

func layerNames() []string {
	names := make([]string, len(Layers))
	for i, l := range Layers {
		names[i] = string(l)
	}
	return names
}

// suggest returns the candidate closest to given, if it is close enough to
// be a typo.
func suggest(given string, candidates []string) string {
	for _, c := range candidates {
		if levenshtein.Distance(given, c, nil) < 3 {
			return c
		}
	}
	return ""
}

// fileStart is the range used for problems with no better place: the start
// of the file.
func fileStart(filename string) *hcl.Range {
	pos := hcl.Pos{Line: 1, Column: 1, Byte: 0}
	return &hcl.Range{Filename: filename, Start: pos, End: pos}
}

// ensureRanges gives every diagnostic a Subject, so every problem can be
// printed as file:line:col.
func ensureRanges(diags hcl.Diagnostics, filename string) hcl.Diagnostics {
	for _, d := range diags {
		if d.Subject == nil {
			if d.Context != nil {
				r := *d.Context
				d.Subject = &r
			} else {
				d.Subject = fileStart(filename)
			}
		}
	}
	return diags
}

// dnsUpstream normalises a resolver address, "IP" or "IP:PORT" ("[IPv6]:PORT"),
// to "IP:PORT" (port 53 by default).
func dnsUpstream(s string) (string, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.String(), nil
	}
	a, err := netip.ParseAddr(strings.Trim(s, "[]"))
	if err != nil || a.Zone() != "" {
		return "", fmt.Errorf("dns_upstreams entry %q is not an IP address or IP:PORT", s)
	}
	return netip.AddrPortFrom(a, 53).String(), nil
}

// bridgeNameRE matches a Linux interface name.
var bridgeNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$`)
