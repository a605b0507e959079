package main

import (
	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/resources"
)

// joinPlacement does nothing on darwin: resources-darwin's placement is a
// wrapper command plus Attach, and the VM runs inside the supervisor
// (Virtualization.framework), which the plugin does not start through a
// wrapper yet.
func joinPlacement(log hclog.Logger, p resources.Placement) error {
	if len(p.Wrapper) > 0 {
		log.Debug("the darwin resource wrapper is not applied to VM supervisors yet", "wrapper", p.Wrapper)
	}
	return nil
}
