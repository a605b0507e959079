package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/version"
	"github.com/berth-dev/berth/sdk/api"
)

func newVersionCommand(g *globals) *cobra.Command {
	var clientOnly bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Show the client's and the daemon's versions",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			printVersion("Client", version.Info())
			if clientOnly {
				return nil
			}
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			conn, err := dialPublic(c.Context(), cfg, publicAPIWait)
			if err != nil {
				return err
			}
			defer conn.Close()
			v, err := api.NewSystemClient(conn).Version(c.Context())
			if err != nil {
				return err
			}
			printVersion("Server", v)
			return nil
		},
	}
	cmd.Flags().BoolVar(&clientOnly, "client", false, "show only the client's version (no daemon needed)")
	return cmd
}

func printVersion(who string, v api.VersionInfo) {
	fmt.Printf("%s:\n Version:\t%s\n Commit:\t%s\n Go version:\t%s\n OS/Arch:\t%s/%s\n API version:\t%s\n",
		who, v.Version, v.Commit, v.GoVersion, v.OS, v.Arch, v.APIVersion)
}
