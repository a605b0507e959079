package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/berth-dev/berth/sdk/schema"
)

func parse(t *testing.T, src string, opts Options) (*Config, hcl.Diagnostics) {
	t.Helper()
	if opts.Env == nil {
		opts.Env = map[string]string{"HOME": "/home/u", "X": "hello"}
	}
	if opts.OS == "" {
		opts.OS = "linux"
	}
	if opts.BaseDir == "" {
		opts.BaseDir = "/etc/berth"
	}
	return NewLoader(opts).Parse([]byte(src), "config.hcl")
}

func mustParse(t *testing.T, src string, opts Options) *Config {
	t.Helper()
	cfg, diags := parse(t, src, opts)
	if diags.HasErrors() {
		t.Fatalf("unexpected errors:\n%s", FormatDiagnostics(diags))
	}
	return cfg
}

func names(ps []*Plugin) []string {
	var out []string
	for _, p := range ps {
		out = append(out, string(p.Layer)+"/"+p.Name)
	}
	return out
}

func TestShippedExample(t *testing.T) {
	src, err := os.ReadFile("testdata/config.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		os, snap string
		active   string
	}{
		{"linux", "overlay", "resources/cgroup snapshot/overlay snapshot/ext4 isolation/sandbox isolation/vm isolation/hybrid lifecycle/local api/grpc"},
		{"darwin", "apfs", "resources/darwin snapshot/apfs snapshot/ext4 isolation/sandbox isolation/vm lifecycle/local api/grpc"},
	} {
		t.Run(tt.os, func(t *testing.T) {
			cfg := mustParse(t, string(src), Options{OS: tt.os, Env: map[string]string{"BERTH_LOG_LEVEL": "DEBUG"}})
			if got := strings.Join(names(cfg.Plugins), " "); got != tt.active {
				t.Errorf("active:\n got %s\nwant %s", got, tt.active)
			}
			if cfg.Berth.LogLevel != "debug" || cfg.Berth.StateDir != "/var/lib/berth" {
				t.Errorf("berth: %+v", cfg.Berth)
			}
			if want := "/etc/berth/bin/plugins"; cfg.Berth.PluginDirs[0] != want {
				t.Errorf("plugin dir %q, want %q", cfg.Berth.PluginDirs[0], want)
			}
			if cfg.Berth.LogFile != "/var/lib/berth/berthd.log" {
				t.Errorf("log file %q", cfg.Berth.LogFile)
			}
			sandbox := cfg.Default(LayerIsolation)
			if sandbox == nil || sandbox.Name != "sandbox" {
				t.Fatalf("default isolation = %v", sandbox)
			}
			if s := cfg.SnapshotterFor(sandbox); s == nil || s.Name != tt.snap {
				t.Errorf("sandbox snapshotter = %v, want %s", s, tt.snap)
			}
			vm := cfg.Lookup(LayerIsolation, "vm")
			if vm.StartTimeout != time.Minute || cfg.SnapshotterFor(vm).Name != "ext4" {
				t.Errorf("vm: %+v", vm)
			}
			if d := cfg.Default(LayerLifecycle); d == nil || d.Name != "local" {
				t.Errorf("sole plugin of a layer is its default, got %v", d)
			}
			if cfg.Default(LayerSnapshot) != nil {
				t.Errorf("snapshot layer has two enabled plugins and no default")
			}
			api := cfg.Lookup(LayerAPI, "grpc")
			c, diags := DecodePluginBody(api, schema.Object(map[string]*schema.Spec{"socket": schema.Attr("socket", "string", true)}))
			if diags.HasErrors() || string(c.JSON) != `{"socket":"/run/berth/api.sock"}` {
				t.Errorf("api settings %s %s", c.JSON, FormatDiagnostics(diags))
			}
			if len(cfg.Disabled) == 0 {
				t.Errorf("no disabled plugins recorded")
			}
		})
	}
}

func TestRegistrySettings(t *testing.T) {
	cfg := mustParse(t, "berth {\n  insecure_registries = [\"reg.lan:5000\"]\n  pull_parallelism = 8\n}\n", Options{})
	if b := cfg.Berth; b.PullParallelism != 8 || len(b.InsecureRegistries) != 1 || b.InsecureRegistries[0] != "reg.lan:5000" {
		t.Errorf("%+v", b)
	}
}

func TestDefaultNetworkSettings(t *testing.T) {
	cfg := mustParse(t, "berth {\n  default_bridge = \"bt0\"\n  default_subnet = \"10.250.1.0/24\"\n}\n", Options{})
	if b := cfg.Berth; b.DefaultBridge != "bt0" || b.DefaultSubnet != "10.250.1.0/24" {
		t.Errorf("%+v", b)
	}
}

func TestFirewallSetting(t *testing.T) {
	for _, v := range []string{"auto", "nftables", "iptables", "iptables-legacy", "iptables-nft"} {
		if got := mustParse(t, "berth {\n  firewall = \""+v+"\"\n}\n", Options{}).Berth.Firewall; got != v {
			t.Errorf("firewall %q parsed as %q", v, got)
		}
	}
}

func TestDNSUpstreams(t *testing.T) {
	cfg := mustParse(t, "berth {\n  dns_upstreams = [\"10.0.0.2\", \"127.0.0.1:5353\", \"[::1]:53\", \"::1\"]\n}\n", Options{})
	want := []string{"10.0.0.2:53", "127.0.0.1:5353", "[::1]:53", "[::1]:53"}
	if got := cfg.Berth.DNSUpstreams; !slices.Equal(got, want) {
		t.Errorf("DNSUpstreams = %q, want %q", got, want)
	}
}

func TestDefaultsWithoutBerthBlock(t *testing.T) {
	cfg := mustParse(t, `plugin "api" "grpc" {}`, Options{OS: "darwin"})
	b := cfg.Berth
	if b.RuntimeDir != "/var/run/berth" || b.LogLevel != "info" || len(b.PluginDirs) != 3 {
		t.Errorf("%+v", b)
	}
	if b.PullParallelism != DefaultPullParallelism || len(b.InsecureRegistries) != 0 {
		t.Errorf("registry defaults: %+v", b)
	}
	p := cfg.Plugins[0]
	if !p.Enabled || p.StartTimeout != DefaultStartTimeout || p.Path != "" || p.BinaryName() != "api-grpc" {
		t.Errorf("%+v", p)
	}
}

// TestErrors checks each envelope error and its exact position.
func TestErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // one line of FormatDiagnostics output
	}{
		{"envelope typo", "berth {\n  stat_dir = \"/x\"\n}\n",
			`config.hcl:2,3-11: An argument named "stat_dir" is not expected here. Did you mean "state_dir"?`},
		{"unknown top-level", "plugins \"api\" \"grpc\" {}\n",
			`config.hcl:1,1-8: Blocks of type "plugins" are not expected here. Did you mean "plugin"?`},
		{"wrong type", "plugin \"api\" \"grpc\" {\n  default = \"yes\"\n}\n",
			`config.hcl:2,13-18: in plugin "api" "grpc": Inappropriate value for attribute "default": a bool is required.`},
		{"unknown layer", "plugin \"isolaton\" \"vm\" {}\n",
			`config.hcl:1,8-18: "isolaton" is not a plugin layer. Did you mean "isolation"?`},
		{"unknown layer far", "plugin \"network\" \"x\" {}\n",
			`config.hcl:1,8-17: "network" is not a plugin layer; use one of resources, isolation, snapshot, lifecycle, api.`},
		{"bad name", "plugin \"api\" \"My API\" {}\n",
			`config.hcl:1,14-22: "My API" is not a valid plugin name`},
		{"duplicate", "plugin \"api\" \"grpc\" {}\n\nplugin \"api\" \"grpc\" {\n  enabled = false\n}\n",
			`config.hcl:3,8-20: plugin "api" "grpc" is already declared at config.hcl:1,1-20;`},
		{"two defaults", "plugin \"isolation\" \"a\" {\n  default = true\n}\nplugin \"isolation\" \"b\" {\n  default = true\n}\n",
			`config.hcl:5,3-17: in plugin "isolation" "b": plugin "isolation" "a" at config.hcl:2,3-17 is already the default of layer "isolation"`},
		{"bad sha256", "plugin \"api\" \"grpc\" {\n  sha256 = \"abc\"\n}\n",
			`config.hcl:2,12-17: in plugin "api" "grpc": sha256 must be 64 hexadecimal digits (the output of ` + "`sha256sum api-grpc`" + `), got "abc".`},
		{"bad duration", "plugin \"api\" \"grpc\" {\n  start_timeout = \"30 s\"\n}\n",
			`config.hcl:2,19-25: in plugin "api" "grpc": start_timeout "30 s" is not a duration; write it like "30s", "1m30s" or "500ms".`},
		{"negative duration", "plugin \"api\" \"grpc\" {\n  start_timeout = \"-1s\"\n}\n",
			`config.hcl:2,19-24: in plugin "api" "grpc": start_timeout must be positive, got "-1s".`},
		{"misplaced snapshotter", "plugin \"snapshot\" \"overlay\" {\n  snapshotter = \"x\"\n}\n",
			`config.hcl:2,3-20: in plugin "snapshot" "overlay": snapshotter binds a snapshot plugin to an isolation mode and is only allowed in plugin "isolation" blocks; remove it here.`},
		{"unknown snapshotter", "plugin \"snapshot\" \"overlay\" {}\nplugin \"isolation\" \"sandbox\" {\n  snapshotter = \"overlya\"\n}\n",
			`config.hcl:3,17-26: in plugin "isolation" "sandbox": snapshotter "overlya" names no enabled plugin "snapshot" "overlya": no such plugin block exists (enabled ones: overlay). Did you mean "overlay"?`},
		{"disabled snapshotter", "plugin \"snapshot\" \"apfs\" {\n  enabled = platform == \"darwin\"\n}\nplugin \"isolation\" \"sandbox\" {\n  snapshotter = \"apfs\"\n}\n",
			`config.hcl:5,17-23: in plugin "isolation" "sandbox": snapshotter "apfs" names no enabled plugin "snapshot" "apfs": that plugin is disabled (enabled evaluates to false) (none is enabled).`},
		{"ambiguous snapshotter", "plugin \"snapshot\" \"a\" {}\nplugin \"snapshot\" \"b\" {}\nplugin \"isolation\" \"sandbox\" {}\n",
			`config.hcl:3,1-29: in plugin "isolation" "sandbox": several snapshot plugins are enabled (a, b) and none is the default;`},
		{"bad log level", "berth {\n  log_level = \"loud\"\n}\n",
			`config.hcl:2,15-21: log_level "loud" is not one of trace, debug, info, warn, error, off.`},
		{"plugin_dirs type", "berth {\n  plugin_dirs = \"bin\"\n}\n",
			`config.hcl:2,17-22: Inappropriate value for attribute "plugin_dirs": list of string required, but have string.`},
		{"pull_parallelism zero", "berth {\n  pull_parallelism = 0\n}\n",
			`config.hcl:2,22-23: pull_parallelism must be a whole number from 1 to 16, got 0.`},
		{"pull_parallelism fraction", "berth {\n  pull_parallelism = 2.5\n}\n",
			`config.hcl:2,22-25: pull_parallelism must be a whole number from 1 to 16, got 2.5.`},
		{"insecure_registries type", "berth {\n  insecure_registries = \"reg:5000\"\n}\n",
			`config.hcl:2,25-35: Inappropriate value for attribute "insecure_registries": list of string required, but have string.`},
		{"dns_upstreams entry", "berth {\n  dns_upstreams = [\"resolver\"]\n}\n",
			`config.hcl:2,19-31: dns_upstreams entry "resolver" is not an IP address or IP:PORT`},
		{"default_bridge name", "berth {\n  default_bridge = \"much-too-long-name\"\n}\n",
			`config.hcl:2,20-40: default_bridge "much-too-long-name" is not an interface name`},
		{"firewall", "berth {\n  firewall = \"ipchains\"\n}\n",
			`config.hcl:2,14-24: firewall "ipchains": want auto, nftables, iptables`},
		{"default_subnet host bits", "berth {\n  default_subnet = \"10.88.0.1/16\"\n}\n",
			`config.hcl:2,20-34: default_subnet "10.88.0.1/16" is not an IPv4 CIDR prefix`},
		{"duplicate berth", "berth {}\nberth {}\n",
			`config.hcl:2,1-6: The berth block is already defined at config.hcl:1,1-6; merge the two.`},
		{"missing env", "plugin \"api\" \"grpc\" {\n  path = env.NOPE\n}\n",
			`config.hcl:2,13-18: in plugin "api" "grpc": This object does not have an attribute named "NOPE".`},
		{"disabled plugin still checked", "plugin \"api\" \"grpc\" {\n  enabled = false\n  sha256  = \"zz\"\n}\n",
			`config.hcl:3,13-17: in plugin "api" "grpc": sha256 must be 64 hexadecimal digits`},
		{"syntax", "plugin \"api\" {\n", `config.hcl:1,14-15: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, diags := parse(t, tt.src, Options{})
			if !diags.HasErrors() || cfg != nil {
				t.Fatalf("no error; want %q", tt.want)
			}
			out := FormatDiagnostics(diags)
			found := false
			for line := range strings.Lines(out) {
				if strings.HasPrefix(line, tt.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("want a line starting with\n  %s\ngot\n%s", tt.want, out)
			}
			for _, d := range diags {
				if d.Subject == nil || d.Subject.Filename != "config.hcl" || d.Subject.Start.Line == 0 {
					t.Errorf("diagnostic without a range: %s", FormatDiagnostic(d))
				}
			}
		})
	}
}

func TestExpressions(t *testing.T) {
	src := `
berth {
  state_dir = "${env.HOME}/.berth"
}
plugin "api" "grpc" {
  enabled = platform == "linux" || platform == "darwin"
  path    = "bin/${arch}/api-grpc"
  socket  = upper(env.X)
  names   = [for s in split(",", "a,b,c") : format("%s-%d", s, strlen(s))]
  biggest = max(1, length(["a", "b", "c", "d", "e"]), 3)
  joined  = join("+", concat(["x"], ["y"]))
  first   = coalesce(null, trimspace("  z "))
  has     = contains(["a"], "a")
}
plugin "resources" "cgroup" {
  enabled = platform == "linux"
}
`
	spec := schema.Object(map[string]*schema.Spec{
		"socket":  schema.Attr("socket", "string", true),
		"names":   schema.Attr("names", "list(string)", true),
		"biggest": schema.Attr("biggest", "number", true),
		"joined":  schema.Attr("joined", "string", true),
		"first":   schema.Attr("first", "string", true),
		"has":     schema.Attr("has", "bool", true),
		"level":   schema.Default(schema.Attr("level", "string", false), schema.Literal(`"info"`)),
	})
	cases := []struct {
		os, arch, active string
	}{
		{"linux", "amd64", "api/grpc resources/cgroup"},
		{"darwin", "arm64", "api/grpc"},
		{"freebsd", "amd64", ""},
	}
	for _, tt := range cases {
		t.Run(tt.os, func(t *testing.T) {
			cfg := mustParse(t, src, Options{OS: tt.os, Arch: tt.arch})
			if got := strings.Join(names(cfg.Plugins), " "); got != tt.active {
				t.Fatalf("active %q, want %q", got, tt.active)
			}
			if len(cfg.Plugins)+len(cfg.Disabled) != 2 {
				t.Fatalf("plugins lost: %v %v", names(cfg.Plugins), names(cfg.Disabled))
			}
			if cfg.Berth.StateDir != "/home/u/.berth" {
				t.Errorf("state dir %q", cfg.Berth.StateDir)
			}
			var api *Plugin
			for _, p := range append(cfg.Plugins, cfg.Disabled...) {
				if p.Layer == LayerAPI {
					api = p
				}
			}
			if want := filepath.Join("/etc/berth/bin", tt.arch, "api-grpc"); api.Path != want {
				t.Errorf("path %q, want %q", api.Path, want)
			}
			c, diags := DecodePluginBody(api, spec)
			if diags.HasErrors() {
				t.Fatal(FormatDiagnostics(diags))
			}
			var got struct {
				Socket  string   `json:"socket"`
				Names   []string `json:"names"`
				Biggest int      `json:"biggest"`
				Joined  string   `json:"joined"`
				First   string   `json:"first"`
				Has     bool     `json:"has"`
				Level   string   `json:"level"`
			}
			if err := c.Decode(&got); err != nil {
				t.Fatal(err)
			}
			if got.Socket != "HELLO" || strings.Join(got.Names, " ") != "a-1 b-1 c-1" || got.Biggest != 5 ||
				got.Joined != "x+y" || got.First != "z" || !got.Has || got.Level != "info" {
				t.Errorf("%+v", got)
			}
		})
	}
}

func TestDecodePluginBodyErrors(t *testing.T) {
	src := `plugin "snapshot" "overlay" {
  root = 12
  bogus = true
  size = "big"
  enabeld = false
}
`
	spec := schema.Object(map[string]*schema.Spec{
		"root":  schema.Attr("root", "string", false),
		"size":  schema.Attr("size", "number", false),
		"upper": schema.Attr("upper_dir", "string", true),
	})
	cfg := mustParse(t, src, Options{})
	_, diags := DecodePluginBody(cfg.Plugins[0], spec)
	out := FormatDiagnostics(diags)
	for _, want := range []string{
		`config.hcl:3,3-8: in plugin "snapshot" "overlay": An argument named "bogus" is not expected here.`,
		`config.hcl:1,29-29: in plugin "snapshot" "overlay": The argument "upper_dir" is required, but no definition was found.`,
		`config.hcl:4,10-15: in plugin "snapshot" "overlay": Inappropriate value for attribute "size": a number is required.`,
		`config.hcl:5,3-10: in plugin "snapshot" "overlay": An argument named "enabeld" is not expected here. Did you mean "enabled"?`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing line\n  %s\nin\n%s", want, out)
		}
	}
	if strings.Contains(out, "root") {
		t.Errorf("number 12 should convert to string root:\n%s", out)
	}

	// Problems in the plugin's own schema are reported at the block, as a plugin bug.
	for _, bad := range []*schema.Spec{
		schema.Object(map[string]*schema.Spec{"x": schema.Attr("x", "strnig", false)}),
		schema.Object(map[string]*schema.Spec{"p": schema.Attr("path", "string", false)}),
	} {
		_, diags := DecodePluginBody(cfg.Plugins[0], bad)
		out := FormatDiagnostics(diags)
		if !strings.HasPrefix(out, `config.hcl:1,1-28: in plugin "snapshot" "overlay": the plugin declares an unusable config schema (a bug in the plugin`) {
			t.Errorf("got %s", out)
		}
	}

	// Empty schema: nothing allowed beyond the envelope.
	cfg = mustParse(t, "plugin \"lifecycle\" \"local\" {\n  enabled = true\n}\n", Options{})
	c, diags := DecodePluginBody(cfg.Plugins[0], schema.Empty())
	if diags.HasErrors() || string(c.JSON) != "{}" {
		t.Errorf("%s %s", c.JSON, FormatDiagnostics(diags))
	}
}

func TestWarningsAndSnippets(t *testing.T) {
	long := "/" + strings.Repeat("r", 80)
	l := NewLoader(Options{OS: "linux", Env: map[string]string{}})
	cfg, diags := l.Parse([]byte("berth {\n  runtime_dir = \""+long+"\"\n}\n"), "config.hcl")
	if cfg == nil || len(diags) != 1 || diags[0].Severity != hcl.DiagWarning {
		t.Fatalf("want one warning, got %v", diags)
	}
	if got := FormatDiagnostics(diags); !strings.HasPrefix(got, "config.hcl:2,17-100: warning: runtime_dir") {
		t.Errorf("got %s", got)
	}

	_, diags = l.Parse([]byte("plugin \"api\" \"grpc\" {\n  default = \"yes\"\n}\n"), "other.hcl")
	var b strings.Builder
	if err := l.WriteDiagnostics(&b, diags, 0, false); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Error: Incorrect attribute value type", `on other.hcl line 2, in plugin "api" "grpc":`, `2:   default = "yes"`} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("snippet output lacks %q:\n%s", want, b.String())
		}
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.hcl")
	if err := os.WriteFile(path, []byte("plugin \"api\" \"grpc\" {\n  path = \"plugins/api\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, diags := Load(path)
	if diags.HasErrors() {
		t.Fatal(FormatDiagnostics(diags))
	}
	if want := filepath.Join(dir, "plugins/api"); cfg.Plugins[0].Path != want {
		t.Errorf("path %q, want %q", cfg.Plugins[0].Path, want)
	}
	_, diags = Load(filepath.Join(dir, "missing.hcl"))
	if got := FormatDiagnostics(diags); !strings.HasPrefix(got, filepath.Join(dir, "missing.hcl")+":1,1-1: Cannot read") {
		t.Errorf("got %s", got)
	}
}
