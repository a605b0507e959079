package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
	"github.com/berth-dev/berth/sdk/network"
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
	want := []string{api.CapGRPC, api.CapREST, api.CapSystem, api.CapPlugins, images.CapImages, CapContainers, network.CapNetwork}
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

func TestSocketIsRootOnlyWithoutItsGroup(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		group string
		want  os.FileMode
	}{
		{"berth-no-such-group-7", 0o600},
		{"root", 0o660}, // a group that exists everywhere stands for berth
	} {
		if c.group == "root" && os.Geteuid() != 0 {
			continue // only root may give a file to a group it is not in
		}
		path := filepath.Join(dir, c.group+".sock")
		l, err := listenUnix(path, 0o660, c.group)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		l.Close()
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != c.want {
			t.Errorf("group %s: socket mode %v; want %v", c.group, fi.Mode().Perm(), c.want)
		}
	}
}

func TestRESTAddressMustBeLoopback(t *testing.T) {
	f := newFrontend(hclog.NewNullLogger())
	for _, addr := range []string{"0.0.0.0:8420", "192.0.2.1:80", "localhost", "example.com:80"} {
		cfg := `{"socket":null,"socket_mode":"0660","rest_socket":null,"rest_address":"` + addr + `"}`
		err := f.Configure(context.Background(), plugin.ConfigureRequest{Config: schema.Config{JSON: []byte(cfg)}, RuntimeDir: t.TempDir()})
		if !errdefs.IsInvalidArgument(err) {
			t.Errorf("rest_address %s: %v; want InvalidArgument", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "[::1]:8420"} {
		if err := checkLoopback(addr); err != nil {
			t.Errorf("%s refused: %v", addr, err)
		}
	}
}
