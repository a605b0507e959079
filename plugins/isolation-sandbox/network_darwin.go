package main

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/sdk/isolation"
)

// On darwin the Seatbelt platform refuses bridge attachments in prepare,
// so there is nothing to wire.

func prepareNetwork(isolation.Spec, *specs.Spec, string) error { return nil }
func attachNetwork(context.Context, isolation.Spec, int) error { return nil }
func detachNetwork(context.Context, isolation.Spec) error      { return nil }
func recoverNetwork(context.Context, isolation.Spec) error     { return nil }
