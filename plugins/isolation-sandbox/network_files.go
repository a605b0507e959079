//go:build linux || darwin

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/internal/netfiles"
	"github.com/berth-dev/berth/sdk/isolation"
)

// The files a bridge attachment gives the container (internal/netfiles),
// written into its task dir and bind-mounted over the image's (as Docker
// does): /etc/hosts, /etc/resolv.conf, /etc/hostname.

// writeNetworkFiles writes the three files into dir and bind-mounts each
// over its /etc path in oci, unless the spec already mounts something
// there (a user's volume wins).
func writeNetworkFiles(n *isolation.NetworkAttachment, oci *specs.Spec, dir string) error {
	hostConf, _ := os.ReadFile("/etc/resolv.conf")
	for _, f := range netfiles.Files(n, oci.Hostname, string(hostConf)) {
		if slices.ContainsFunc(oci.Mounts, func(m specs.Mount) bool { return filepath.Clean(m.Destination) == f.Path }) {
			continue
		}
		p := filepath.Join(dir, f.Name)
		if err := atomicfile.WriteFile(p, []byte(f.Content), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		oci.Mounts = append(oci.Mounts, specs.Mount{Destination: f.Path, Type: "bind", Source: p, Options: []string{"rbind", "rprivate"}})
	}
	return nil
}
