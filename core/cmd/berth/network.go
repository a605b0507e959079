package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/network"
)

// addNetworkCommands adds `berth network …` and `berth port`.
func addNetworkCommands(root *cobra.Command, g *globals) {
	cmd := &cobra.Command{Use: "network", Short: "Manage networks"}
	cmd.AddCommand(newNetworkCreateCommand(g), newNetworkLsCommand(g), newNetworkInspectCommand(g),
		newNetworkRmCommand(g), newNetworkPruneCommand(g), newNetworkConnectCommand(g), newNetworkDisconnectCommand(g))
	root.AddCommand(cmd, newPortCommand(g))
}

// networkError says plainly when the daemon has no network service.
func networkError(err error) error {
	if err != nil && errdefs.IsNotImplemented(err) && strings.Contains(err.Error(), "unknown service berth.network") {
		return errors.New("the api plugin does not serve networks (it needs a daemon with the network service)")
	}
	return err
}

func newNetworkCreateCommand(g *globals) *cobra.Command {
	var subnet string
	var internal bool
	var labels []string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NAME",
		Short: "Create a network",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			lbls, err := parseLabels(labels)
			if err != nil {
				return err
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				n, err := p.net.Create(ctx, network.CreateSpec{Name: args[0], Subnet: subnet, Internal: internal, Labels: lbls})
				if err != nil {
					return networkError(err)
				}
				fmt.Println(n.ID)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&subnet, "subnet", "", "subnet in CIDR form (default: the next free /24 from 10.89.0.0)")
	cmd.Flags().BoolVar(&internal, "internal", false, "no route out of the host (no NAT, no published ports)")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "label KEY=VALUE")
	return cmd
}

func parseLabels(vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, v := range vals {
		k, val, _ := strings.Cut(v, "=")
		if k == "" {
			return nil, fmt.Errorf("label %q: want KEY=VALUE", v)
		}
		out[k] = val
	}
	return out, nil
}

func newNetworkLsCommand(g *globals) *cobra.Command {
	var quiet bool
	var format string
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List networks",
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				ns, err := p.net.List(ctx)
				if err != nil {
					return networkError(err)
				}
				switch {
				case format == "json":
					return printJSON(ns)
				case format != "table":
					return fmt.Errorf("--format %q: want table or json", format)
				case quiet:
					for _, n := range ns {
						fmt.Println(n.ID[:12])
					}
					return nil
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
				fmt.Fprintln(tw, "NETWORK ID\tNAME\tSUBNET\tGATEWAY\tINTERNAL\tCONTAINERS")
				for _, n := range ns {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%d\n", n.ID[:12], n.Name, n.Subnet, n.Gateway, n.Internal, len(n.Containers))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only network IDs")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

// networkView is `network inspect`'s JSON: the network and its endpoints
// by container ID, like Docker's.
type networkView struct {
	network.Network
	Endpoints map[string]endpointView
}

type endpointView struct {
	Name        string
	Hostname    string
	Aliases     []string `json:",omitempty"`
	IPv4Address string
	MacAddress  string
	Ports       []string `json:",omitempty"`
}

func newNetworkInspectCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NETWORK...",
		Short: "Show networks and their containers as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				var out []networkView
				for _, ref := range args {
					n, err := p.net.Inspect(ctx, ref)
					if err != nil {
						return networkError(err)
					}
					eps, err := p.net.Endpoints(ctx, n.ID)
					if err != nil {
						return networkError(err)
					}
					v := networkView{Network: n, Endpoints: map[string]endpointView{}}
					for _, e := range eps {
						ev := endpointView{Name: e.ContainerName, Hostname: e.Hostname, Aliases: e.Aliases,
							IPv4Address: e.IP + "/" + strconv.Itoa(e.PrefixLen), MacAddress: e.MAC}
						for _, pm := range e.Ports {
							ev.Ports = append(ev.Ports, network.FormatPort(pm))
						}
						v.Endpoints[e.ContainerID] = ev
					}
					out = append(out, v)
				}
				return printJSON(out)
			})
		},
	}
}

func newNetworkRmCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "rm NETWORK...",
		Aliases: []string{"remove"},
		Short:   "Remove networks no container uses",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				return eachRef(args, func(ref string) error { return networkError(p.net.Remove(ctx, ref)) })
			})
		},
	}
}

func newNetworkPruneCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove every network no container uses (never the default one)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if !force {
				fmt.Print("This removes every network no container uses.\nContinue? [y/N] ")
				answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					return errors.New("prune cancelled (give -f to skip the question)")
				}
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				removed, err := p.net.Prune(ctx)
				if len(removed) > 0 {
					fmt.Println("Deleted networks:")
					for _, n := range removed {
						fmt.Println(n)
					}
				}
				return networkError(err)
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	return cmd
}

// endpointOf returns the network endpoint of container ct on the network
// it was created on (not one `network connect` added), if it has one.
func endpointOf(ctx context.Context, p *publicAPI, ct lifecycle.Container) (*network.Endpoint, error) {
	eps, err := p.net.Endpoints(ctx, "")
	if err != nil {
		return nil, err
	}
	want := ct.Config.Network.Network
	if want == "" {
		want = network.DefaultNetwork
	}
	var first *network.Endpoint
	for _, e := range eps {
		if e.ContainerID != ct.ID {
			continue
		}
		if e.Network == want || strings.HasPrefix(e.NetworkID, want) {
			return &e, nil
		}
		if first == nil {
			first = &e
		}
	}
	return first, nil
}

func newNetworkConnectCommand(g *globals) *cobra.Command {
	var req lifecycle.NetworkConnect
	cmd := &cobra.Command{
		Use:   "connect [OPTIONS] NETWORK CONTAINER",
		Short: "Connect a running container to a further network",
		Long: "Connect a running container to a further network: it gets an interface (eth1, eth2, ...) and an address there, " +
			"and the network's containers resolve its name and aliases. /etc/hosts is left as it is. Sandbox containers only: " +
			"a VM's NIC cannot be hot-plugged.",
		Args: cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			req.Network = args[0]
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				return networkError(p.lc.ConnectNetwork(ctx, args[1], req))
			})
		},
	}
	cmd.Flags().StringVar(&req.IP, "ip", "", "IPv4 address on the network (default: the next free one)")
	cmd.Flags().StringSliceVar(&req.Aliases, "alias", nil, "further DNS name of the container on the network")
	return cmd
}

func newNetworkDisconnectCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "disconnect NETWORK CONTAINER",
		Short: "Disconnect a container from a network it was connected to",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				return networkError(p.lc.DisconnectNetwork(ctx, args[1], args[0]))
			})
		},
	}
}

func newPortCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "port CONTAINER [PRIVATE_PORT[/PROTO]]",
		Short: "List a container's published ports, or the one of a private port",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(c *cobra.Command, args []string) error {
			var wantPort uint64
			wantProto := ""
			if len(args) == 2 {
				ps, proto, _ := strings.Cut(args[1], "/")
				n, err := strconv.ParseUint(ps, 10, 16)
				if err != nil || n == 0 || (proto != "" && proto != "tcp" && proto != "udp") {
					return fmt.Errorf("port %q: want PORT or PORT/tcp|udp", args[1])
				}
				wantPort, wantProto = n, proto
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				ct, err := p.lc.Get(ctx, args[0])
				if err != nil {
					return err
				}
				e, err := endpointOf(ctx, p, ct)
				if err != nil {
					return networkError(err)
				}
				var ports []isolation.PortMapping
				if e != nil {
					ports = e.Ports
				}
				slices.SortFunc(ports, func(a, b isolation.PortMapping) int {
					if a.ContainerPort != b.ContainerPort {
						return int(a.ContainerPort) - int(b.ContainerPort)
					}
					return strings.Compare(a.Protocol, b.Protocol)
				})
				found := false
				for _, pm := range ports {
					if wantPort != 0 && (uint64(pm.ContainerPort) != wantPort || (wantProto != "" && pm.Protocol != wantProto)) {
						continue
					}
					found = true
					if wantPort != 0 {
						host := pm.HostIP
						if host == "" {
							host = "0.0.0.0"
						}
						fmt.Printf("%s:%d\n", host, pm.HostPort)
						continue
					}
					fmt.Println(network.FormatPort(pm))
				}
				if wantPort != 0 && !found {
					return fmt.Errorf("no public port %s published for %s", args[1], args[0])
				}
				return nil
			})
		},
	}
}

// networkSettings is the NetworkSettings part of `berth inspect CONTAINER`.
type networkSettings struct {
	Network     string
	NetworkID   string
	IPAddress   string
	IPPrefixLen int
	MacAddress  string
	Gateway     string
	Hostname    string
	Aliases     []string `json:",omitempty"`
	// Ports maps "80/tcp" to its host bindings, as Docker's.
	Ports map[string][]portBinding
}

type portBinding struct {
	HostIp   string //nolint:revive // Docker's spelling
	HostPort string
}

// containerView is `berth inspect`'s JSON of a container.
type containerView struct {
	lifecycle.Container
	NetworkSettings *networkSettings `json:",omitempty"`
}

// inspectContainer adds the container's network settings, when the daemon
// serves networks and the container has an endpoint.
func inspectContainer(ctx context.Context, p *publicAPI, ct lifecycle.Container) containerView {
	v := containerView{Container: ct}
	callCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	e, err := endpointOf(callCtx, p, ct)
	if err != nil || e == nil {
		return v
	}
	ns := &networkSettings{Network: e.Network, NetworkID: e.NetworkID, IPAddress: e.IP, IPPrefixLen: e.PrefixLen,
		MacAddress: e.MAC, Gateway: e.Gateway, Hostname: e.Hostname, Aliases: e.Aliases, Ports: map[string][]portBinding{}}
	for _, pm := range e.Ports {
		k := fmt.Sprintf("%d/%s", pm.ContainerPort, pm.Protocol)
		host := pm.HostIP
		if host == "" {
			host = "0.0.0.0"
		}
		ns.Ports[k] = append(ns.Ports[k], portBinding{HostIp: host, HostPort: strconv.Itoa(int(pm.HostPort))})
	}
	v.NetworkSettings = ns
	return v
}

// publishedPorts returns every container's published ports as ps shows
// them (127.0.0.1:8080->80/tcp), by container ID; nothing when the daemon
// serves no networks.
func publishedPorts(ctx context.Context, p *publicAPI) map[string][]string {
	out := map[string][]string{}
	eps, err := p.net.Endpoints(ctx, "")
	if err != nil {
		return out
	}
	for _, e := range eps {
		for _, pm := range e.Ports {
			host := pm.HostIP
			if host == "" {
				host = "0.0.0.0"
			}
			out[e.ContainerID] = append(out[e.ContainerID], fmt.Sprintf("%s:%d->%d/%s", host, pm.HostPort, pm.ContainerPort, pm.Protocol))
		}
	}
	return out
}
