package main

import (
	"github.com/spf13/cobra"
)

func newPluginCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "plugin", Short: "Inspect the daemon's plugins"}
	var format string
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List plugins: layer, name, version, pid, health, binary",
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			sys, closeFn, err := adminClient(c.Context(), cfg)
			if err != nil {
				return err
			}
			defer closeFn()
			ps, err := sys.Plugins(c.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return printJSON(ps)
			}
			printPlugins(ps)
			return nil
		},
	}
	ls.Flags().StringVar(&format, "format", "table", "output format: table or json")
	cmd.AddCommand(ls)
	return cmd
}
