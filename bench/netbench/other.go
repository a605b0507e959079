//go:build !linux

package main

import (
	"context"
	"errors"
	"net/netip"
)

var errLinuxOnly = errors.New("network namespaces and the kernel datapath are Linux only")

func enterNetns(string) error { return errLinuxOnly }

func cleanup(context.Context, string, netip.Prefix) error { return errLinuxOnly }
