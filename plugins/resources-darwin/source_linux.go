package main

import "github.com/berth-dev/berth/internal/rpolicy"

// newSource on Linux reads /proc: the plugin is meant for darwin, but its
// engine, wrapper and contract are tested here with this source. Linux
// containers use resources-cgroup.
func newSource() rpolicy.Source { return rpolicy.ProcSource{} }
