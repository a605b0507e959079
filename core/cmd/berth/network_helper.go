package main

import (
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/netd"
)

// networkHelperArgs is the command the daemon runs, with "--state FILE",
// as a network's helper (core/network).
func networkHelperArgs() []string {
	exe, err := os.Executable()
	if err != nil {
		return nil
	}
	return []string{exe, "system", "network-helper"}
}

// newNetworkHelperCommand is `berth system network-helper --state FILE`,
// the per-network helper the daemon starts: the network's DNS server and
// published-port proxies (internal/netd). Hidden: users never run it.
func newNetworkHelperCommand() *cobra.Command {
	var state string
	cmd := &cobra.Command{
		Use:    "network-helper --state FILE",
		Short:  "Serve one network's DNS and published ports (started by the daemon)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			log := hclog.New(&hclog.LoggerOptions{Name: "network-helper", Level: hclog.Info, Output: os.Stderr})
			ctx, stop := signal.NotifyContext(c.Context(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			return netd.Run(ctx, state, log)
		},
	}
	cmd.Flags().StringVar(&state, "state", "", "the network's state file")
	_ = cmd.MarkFlagRequired("state")
	return cmd
}
