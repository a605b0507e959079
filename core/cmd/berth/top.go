package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// newTopCommand is `berth top CONTAINER [ps OPTIONS]`: the container's
// processes, ps -ef's columns unless ps options are given.
func newTopCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "top CONTAINER [ps OPTIONS]",
		Short: "Show the processes of a running container",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				res, err := p.lc.Top(ctx, args[0], args[1:])
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
				fmt.Fprintln(tw, strings.Join(res.Titles, "\t"))
				for _, row := range res.Processes {
					fmt.Fprintln(tw, strings.Join(row, "\t"))
				}
				return tw.Flush()
			})
		},
	}
	// Everything after the container goes to ps (docker top CTR -o pid).
	cmd.Flags().SetInterspersed(false)
	return cmd
}
