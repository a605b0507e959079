package daemon

import (
	"fmt"
	"slices"
	"strings"

	"github.com/berth-dev/berth/core/host"
	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/snapshot"
)

// rootfsKinds pairs what an isolation plugin accepts as rootfs with what a
// snapshotter produces.
var rootfsKinds = map[string]string{
	isolation.CapRootfsOverlay: snapshot.CapMountOverlay,
	isolation.CapRootfsBind:    snapshot.CapMountBind,
	isolation.CapRootfsBlock:   snapshot.CapMountBlock,
	isolation.CapRootfsShare:   snapshot.CapMountShare,
}

// bindingError says why snapshotter snapCaps cannot serve isolation mode
// isoCaps, or returns nil when they share a mount kind.
func bindingError(mode string, isoCaps []string, snapshotter string, snapCaps []string) error {
	var accepts, offers []string
	for rootfs, mount := range rootfsKinds {
		if slices.Contains(isoCaps, rootfs) {
			accepts = append(accepts, rootfs)
			if slices.Contains(snapCaps, mount) {
				return nil
			}
		}
		if slices.Contains(snapCaps, mount) {
			offers = append(offers, mount)
		}
	}
	slices.Sort(accepts)
	slices.Sort(offers)
	return fmt.Errorf("isolation %q accepts [%s] but its snapshotter %q offers [%s]; bind a snapshotter of a matching kind in config.hcl",
		mode, strings.Join(accepts, " "), snapshotter, strings.Join(offers, " "))
}

// checkBindings verifies that each isolation plugin's bound snapshotter
// produces mounts it accepts, from the capabilities both declared.
func checkBindings(plugins []api.PluginStatus, specs []host.Spec) error {
	caps := map[string][]string{}
	for _, p := range plugins {
		caps[string(p.Layer)+"/"+p.Name] = p.Capabilities
	}
	var errs []string
	for _, s := range specs {
		if s.Layer != plugin.LayerIsolation || s.Snapshotter == "" {
			continue
		}
		snapID := string(plugin.LayerSnapshot) + "/" + s.Snapshotter
		if err := bindingError(s.Name, caps[s.ID()], s.Snapshotter, caps[snapID]); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return nil
}
