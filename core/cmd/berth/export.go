package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

// newExportCommand is `berth export`: the container's root filesystem
// (without its volumes and other mounts) as a tar, to a file or stdout.
func newExportCommand(g *globals) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export [OPTIONS] CONTAINER",
		Short: "Write a container's filesystem as a tar archive",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if output == "" || output == "-" {
				if isTerminal(os.Stdout) {
					return errors.New("export: refusing to write a tar to a terminal; give -o FILE or redirect the output")
				}
				return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
					return p.lc.Export(ctx, args[0], os.Stdout)
				})
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				return exportToFile(ctx, p, args[0], output)
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to FILE instead of stdout")
	return cmd
}

// exportToFile writes the export to a temporary file beside path and
// renames it into place once complete, so path is never a partial tar.
func exportToFile(ctx context.Context, p *publicAPI, ref, path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := p.lc.Export(ctx, ref, tmp); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("export: %w", err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("export: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}
