package main

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/sdk/resources"
)

// joinPlacement moves the calling process (the supervisor, before it
// starts the hypervisor) into the placement's cgroup in every hierarchy
// where the resources layer made it: the same resolution as the sandbox
// supervisor's (sandbox.OpenCgroup: Placement.CgroupPath relative to each
// mounted hierarchy's root, found through /proc/self/mountinfo, which
// covers the berth.resources.cgroup/{mode,root,controllers} annotations'
// hierarchies), except that nothing is created: the group is the resources
// layer's. An empty placement (no resources plugin) joins nothing.
func joinPlacement(log hclog.Logger, p resources.Placement) error {
	if p.CgroupPath == "" {
		return nil
	}
	cg, err := sandbox.OpenCgroup(p.CgroupPath, false)
	if err != nil {
		return fmt.Errorf("host resource group %s: %w", p.CgroupPath, err)
	}
	if err := cg.Join(os.Getpid()); err != nil {
		return fmt.Errorf("host resource group %s: %w", p.CgroupPath, err)
	}
	log.Debug("joined the host resource group", "cgroup", p.CgroupPath, "v1", cg.V1, "v2", cg.V2)
	return nil
}
