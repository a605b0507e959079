package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/usernet"
)

// usernetHelperArgs is the command the daemon runs, with "--state FILE",
// as a user-mode network's helper (core/network, DatapathUser).
func usernetHelperArgs() []string {
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	return []string{exe, "system", "usernet-helper"}
}

// newUsernetHelperCommand is `berth system usernet-helper --state FILE`,
// the per-network helper of a user-mode network: its switch (VM sockets),
// NAT, DNS and published ports (internal/usernet). Hidden: users never
// run it.
func newUsernetHelperCommand() *cobra.Command {
	var state string
	cmd := &cobra.Command{
		Use:    "usernet-helper --state FILE",
		Short:  "Serve one user-mode network: switch, NAT, DNS, published ports (started by the daemon)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			log := hclog.New(&hclog.LoggerOptions{Name: "usernet-helper", Level: hclog.Info, Output: os.Stderr})
			ctx, stop := signal.NotifyContext(c.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return usernet.Run(ctx, state, log)
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "the network's state file")
	_ = cmd.MarkFlagRequired("state")
	return cmd
}
