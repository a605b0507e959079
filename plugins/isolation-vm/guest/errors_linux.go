//go:build linux

package main

import "github.com/berth-dev/berth/sdk/errdefs"

var errNotPID1 = errdefs.NotImplemented("the agent is not the guest's init; it changes no machine-wide settings")
