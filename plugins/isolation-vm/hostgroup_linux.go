package main

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/internal/sandbox"
	"github.com/berth-dev/berth/sdk/resources"
)

// The placement annotations of plugins/resources-cgroup (NOTES
// "Resources"): CgroupPath is relative to <root>/<controller> for each
// listed v1 controller, or to <root> on v2.
const (
	annotationCgroupMode        = "berth.resources.cgroup/mode"
	annotationCgroupRoot        = "berth.resources.cgroup/root"
	annotationCgroupControllers = "berth.resources.cgroup/controllers"
)

// joinPlacement moves the calling process (the supervisor, before it
// starts the hypervisor) into the placement's cgroup. Nothing is created:
// the group is the resources layer's, and a directory it names that does
// not exist is an error. An empty placement (no resources plugin) joins
// nothing.
func joinPlacement(log hclog.Logger, p resources.Placement) error {
	if p.CgroupPath == "" {
		return nil
	}
	cg, err := placementCgroup(p)
	if err != nil {
		return fmt.Errorf("host resource group %s: %w", p.CgroupPath, err)
	}
	if err := cg.Join(os.Getpid()); err != nil {
		return fmt.Errorf("host resource group %s: %w", p.CgroupPath, err)
	}
	log.Debug("joined the host resource group", "cgroup", p.CgroupPath, "v1", cg.V1, "v2", cg.V2)
	return nil
}

// placementCgroup resolves a placement to its directories: from the
// resources-cgroup annotations when they are there (exactly the
// hierarchies the group was made in), else as the sandbox supervisor
// does (sandbox.OpenCgroup: the path in every mounted hierarchy that has
// it).
func placementCgroup(p resources.Placement) (*sandbox.Cgroup, error) {
	root := p.Annotations[annotationCgroupRoot]
	if root == "" {
		return sandbox.OpenCgroup(p.CgroupPath, false)
	}
	if !path.IsAbs(p.CgroupPath) || path.Clean(p.CgroupPath) != p.CgroupPath || !filepath.IsAbs(root) {
		return nil, fmt.Errorf("placement path %q under root %q: want clean absolute paths", p.CgroupPath, root)
	}
	cg := &sandbox.Cgroup{V1: map[string]string{}}
	switch mode := p.Annotations[annotationCgroupMode]; mode {
	case "v2":
		cg.V2 = filepath.Join(root, p.CgroupPath)
	case "v1":
		for _, c := range strings.Split(p.Annotations[annotationCgroupControllers], ",") {
			if c == "" || strings.ContainsAny(c, "/") || c == "." || c == ".." {
				return nil, fmt.Errorf("annotation %s = %q: bad controller %q", annotationCgroupControllers, p.Annotations[annotationCgroupControllers], c)
			}
			cg.V1[c] = filepath.Join(root, c, p.CgroupPath)
		}
	default:
		return nil, fmt.Errorf("annotation %s = %q: want v1 or v2", annotationCgroupMode, mode)
	}
	for _, d := range append(mapValues(cg.V1), cg.V2) {
		if d == "" {
			continue
		}
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("the group's cgroup %s is missing (%v)", d, err)
		}
	}
	return cg, nil
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
