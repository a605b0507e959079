package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/core/config"
	"github.com/berth-dev/berth/core/daemon"
	"github.com/berth-dev/berth/core/host"
)

func newConfigCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Check config.hcl"}
	validate := &cobra.Command{
		Use:   "validate [FILE]",
		Short: "Check a config file, including each plugin's settings against the schema it declares",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if len(args) == 1 {
				g.configFile = args[0]
			}
			path, err := g.configPath()
			if err != nil {
				return err
			}
			loader := config.NewLoader(config.Options{})
			cfg, diags := loader.LoadFile(path)
			if !diags.HasErrors() {
				tmp, err := os.MkdirTemp("", "berth-validate-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(tmp)
				ctx, cancel := context.WithTimeout(c.Context(), 2*time.Minute)
				defer cancel()
				diags = append(diags, daemon.Validate(ctx, cfg, host.Options{StateDir: tmp, RuntimeDir: tmp})...)
			}
			if len(diags) > 0 {
				fmt.Fprint(os.Stderr, config.FormatDiagnostics(diags))
			}
			if diags.HasErrors() {
				return exitError(1)
			}
			fmt.Printf("%s: valid (%d plugins enabled, %d disabled)\n", path, len(cfg.Plugins), len(cfg.Disabled))
			return nil
		},
	}
	cmd.AddCommand(validate)
	return cmd
}
