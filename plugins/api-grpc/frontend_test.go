package main

import (
	"context"
	"slices"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
)

// The capability set is part of the contract: the core and the conformance
// suites rely on it, so it is asserted exactly.
func TestInfoDeclaresItsCapabilities(t *testing.T) {
	info, err := newFrontend(hclog.NewNullLogger()).Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{api.CapGRPC, api.CapSystem, api.CapPlugins, images.CapImages}
	if info.Layer != plugin.LayerAPI || info.Name != "grpc" || !slices.Equal(info.Capabilities, want) {
		t.Fatalf("Info = %+v; want layer api, name grpc, capabilities %v", info, want)
	}
	if !slices.Contains(info.APIVersions, plugin.APIVersion) {
		t.Fatalf("APIVersions = %v; want %s among them", info.APIVersions, plugin.APIVersion)
	}
}

func TestConfigSchemaIsValid(t *testing.T) {
	spec, err := newFrontend(hclog.NewNullLogger()).ConfigSchema(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := spec.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestConfigureErrors(t *testing.T) {
	f := newFrontend(hclog.NewNullLogger())
	ctx := context.Background()
	err := f.Configure(ctx, plugin.ConfigureRequest{Config: schema.Config{JSON: []byte(`{"socket":null,"socket_mode":"rw"}`)}, RuntimeDir: t.TempDir()})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad socket_mode: %v; want InvalidArgument", err)
	}
	err = f.Configure(ctx, plugin.ConfigureRequest{Config: schema.Config{JSON: []byte(`{"socket":null,"socket_mode":"0660"}`)}, RuntimeDir: t.TempDir()})
	if !errdefs.IsNotFound(err) {
		t.Fatalf("no system handle: %v; want NotFound", err)
	}
	if es, _ := f.Endpoints(ctx); len(es) != 0 {
		t.Fatalf("endpoints before a successful Configure: %v", es)
	}
}
