package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/berth-dev/berth/sdk/lifecycle"
)

// TestVolumeSpecs checks how -v and --mount name volumes: a name is a
// volume, an absolute path a bind, a lone container path an anonymous
// volume, and volume options pass through to the lifecycle.
func TestVolumeSpecs(t *testing.T) {
	for _, tc := range []struct {
		v, mount []string
		want     []lifecycle.Mount
	}{
		{v: []string{"data:/var/lib/data"}, want: []lifecycle.Mount{{Type: "volume", Source: "data", Destination: "/var/lib/data"}}},
		{v: []string{"data:/d:ro"}, want: []lifecycle.Mount{{Type: "volume", Source: "data", Destination: "/d", ReadOnly: true}}},
		{v: []string{"data:/d:ro,nocopy"}, want: []lifecycle.Mount{{Type: "volume", Source: "data", Destination: "/d", ReadOnly: true, Options: []string{"nocopy"}}}},
		{v: []string{"/srv:/d"}, want: []lifecycle.Mount{{Type: "bind", Source: "/srv", Destination: "/d"}}},
		{v: []string{"/cache"}, want: []lifecycle.Mount{{Type: "volume", Destination: "/cache"}}},
		{v: []string{"my.vol:/d"}, want: []lifecycle.Mount{{Type: "volume", Source: "my.vol", Destination: "/d"}}},
		{mount: []string{"type=volume,src=data,dst=/d"}, want: []lifecycle.Mount{{Type: "volume", Source: "data", Destination: "/d"}}},
		{mount: []string{"type=volume,source=data,target=/d,readonly,volume-nocopy"}, want: []lifecycle.Mount{{Type: "volume", Source: "data", Destination: "/d", ReadOnly: true, Options: []string{"volume-nocopy"}}}},
		{mount: []string{"dst=/anon"}, want: []lifecycle.Mount{{Type: "volume", Destination: "/anon"}}},
	} {
		got, err := parseMounts(tc.v, tc.mount, nil)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("-v %q --mount %q = %+v, %v; want %+v", tc.v, tc.mount, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		v, mount []string
		want     string
	}{
		{v: []string{"data"}, want: `-v "data"`},
		{v: []string{"./rel:/d"}, want: "must be absolute"},
		{v: []string{"../up:/d"}, want: "must be absolute"},
		{v: []string{"a/b:/d"}, want: "must be absolute"},
		{v: []string{"data:rel"}, want: `-v "data:rel"`},
		{v: []string{"a:/b:ro:x"}, want: `-v "a:/b:ro:x"`},
		{mount: []string{"type=volume,src=data"}, want: "needs an absolute target"},
		{mount: []string{"type=nfs,dst=/d"}, want: `type "nfs"`},
	} {
		_, err := parseMounts(tc.v, tc.mount, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("-v %q --mount %q: error %v, want one containing %q", tc.v, tc.mount, err, tc.want)
		}
	}
}

func TestSplitCpArg(t *testing.T) {
	for arg, want := range map[string][2]string{
		"web:/etc/hosts": {"web", "/etc/hosts"},
		"web:rel":        {"web", "rel"},
		"/abs/a:b":       {"", "/abs/a:b"},
		"./a:b":          {"", "./a:b"},
		"dir/a:b":        {"", "dir/a:b"},
		"-":              {"", "-"},
		"file":           {"", "file"},
	} {
		if c, p := splitCpArg(arg); c != want[0] || p != want[1] {
			t.Errorf("splitCpArg(%q) = %q, %q; want %q", arg, c, p, want)
		}
	}
	for p, want := range map[string]bool{"/a/.": true, ".": true, "/a": false, "/a/": false, "/a/..": false} {
		if got := copyContents(p); got != want {
			t.Errorf("copyContents(%q) = %v", p, got)
		}
	}
}
