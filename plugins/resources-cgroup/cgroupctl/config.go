package cgroupctl

import (
	"strings"
	"time"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/schema"
)

// configSchema declares the plugin's settings in config.hcl:
//
//	plugin "resources" "cgroup" {
//	  parent          = "berth"          # every group is <parent>/<id> in each hierarchy
//	  mode            = "auto"           # "auto", "v1" or "v2"
//	  cgroup_root     = "/sys/fs/cgroup" # where the hierarchies are mounted
//	  sample_interval = "2s"             # the shared CPU throttling sampler's period
//	}
//
// mode "auto" uses v2 on a pure v2 host and v1 on a v1 or hybrid one.
// cgroup_root is, for v1, the directory holding one mount per controller and,
// for v2, the unified mount (on a hybrid host "v2" mode defaults to its
// unified mount, which usually has no controllers: then only accounting
// works). Tests and the VM guest use mode and cgroup_root to pick a path.
var configSchema = schema.Object(map[string]*schema.Spec{
	"parent":          schema.Default(schema.Attr("parent", "string", false), schema.Literal(`"berth"`)),
	"mode":            schema.Default(schema.Attr("mode", "string", false), schema.Literal(`"auto"`)),
	"cgroup_root":     schema.Default(schema.Attr("cgroup_root", "string", false), schema.Literal(`""`)),
	"sample_interval": schema.Default(schema.Attr("sample_interval", "string", false), schema.Literal(`"2s"`)),
})

// settings is the decoded config; empty fields take the defaults.
type settings struct {
	Parent         string `json:"parent"`
	Mode           string `json:"mode"`
	CgroupRoot     string `json:"cgroup_root"`
	SampleInterval string `json:"sample_interval"`

	interval time.Duration
}

// Modes.
const (
	modeAuto = "auto"
	modeV1   = "v1"
	modeV2   = "v2"
)

func decodeSettings(c schema.Config) (settings, error) {
	var s settings
	if err := c.Decode(&s); err != nil {
		return s, errdefs.InvalidArgument("resources-cgroup: %v", err)
	}
	if s.Parent == "" {
		s.Parent = "berth"
	}
	if s.Mode == "" {
		s.Mode = modeAuto
	}
	if s.SampleInterval == "" {
		s.SampleInterval = "2s"
	}
	switch s.Mode {
	case modeAuto, modeV1, modeV2:
	default:
		return s, errdefs.InvalidArgument("resources-cgroup: mode %q is not one of \"auto\", \"v1\", \"v2\"", s.Mode)
	}
	if !strings.HasPrefix(s.Parent, "berth") || strings.Contains(s.Parent, "..") {
		return s, errdefs.InvalidArgument("resources-cgroup: parent %q must start with \"berth\" (a relative cgroup name such as \"berth\" or \"berth-ci\"), so that everything Berth creates is recognisably its own", s.Parent)
	}
	d, err := time.ParseDuration(s.SampleInterval)
	if err != nil || d < 100*time.Millisecond {
		return s, errdefs.InvalidArgument("resources-cgroup: sample_interval %q is not a duration of at least 100ms (write it like \"2s\")", s.SampleInterval)
	}
	s.interval = d
	return s, nil
}
