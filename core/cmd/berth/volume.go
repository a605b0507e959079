package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/sdk/lifecycle"
)

// newVolumeCommand is `berth volume …`: named volumes, kept by the
// lifecycle plugin and mounted with run -v NAME:/path.
func newVolumeCommand(g *globals) *cobra.Command {
	vol := &cobra.Command{Use: "volume", Short: "Manage volumes"}
	vol.AddCommand(newVolumeCreateCommand(g), newVolumeLsCommand(g), newVolumeInspectCommand(g),
		newVolumeRmCommand(g), newVolumePruneCommand(g))
	return vol
}

func newVolumeCreateCommand(g *globals) *cobra.Command {
	var labels []string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] [VOLUME]",
		Short: "Create a volume (a random name when none is given)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			lbl, err := parseVolumeLabels(labels)
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				v, err := p.lc.CreateVolume(ctx, name, lbl)
				if err != nil {
					return err
				}
				fmt.Println(v.Name)
				return nil
			})
		},
	}
	cmd.Flags().StringArrayVarP(&labels, "label", "l", nil, "set a label KEY=VALUE")
	return cmd
}

// parseVolumeLabels reads KEY=VALUE (or KEY, an empty value) labels.
func parseVolumeLabels(vals []string) (map[string]string, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, v := range vals {
		k, val, _ := strings.Cut(v, "=")
		if k == "" {
			return nil, fmt.Errorf("--label %q: want KEY=VALUE", v)
		}
		out[k] = val
	}
	return out, nil
}

// volumeEntry is one volume as ls --format json and inspect print it
// (Docker's field names).
type volumeEntry struct {
	Name       string
	Driver     string
	Mountpoint string
	Labels     map[string]string
	CreatedAt  string
	Scope      string
	// UsedBy lists the containers mounting the volume (Berth's addition).
	UsedBy []string
}

func newVolumeEntry(v lifecycle.Volume) volumeEntry {
	labels := v.Labels
	if labels == nil {
		labels = map[string]string{}
	}
	users := v.UsedBy
	if users == nil {
		users = []string{}
	}
	return volumeEntry{Name: v.Name, Driver: v.Driver, Mountpoint: v.Mountpoint, Labels: labels,
		CreatedAt: v.CreatedAt.Format("2006-01-02T15:04:05Z07:00"), Scope: "local", UsedBy: users}
}

func newVolumeLsCommand(g *globals) *cobra.Command {
	var quiet bool
	var format string
	cmd := &cobra.Command{
		Use:     "ls [OPTIONS]",
		Aliases: []string{"list"},
		Short:   "List volumes",
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				vs, err := p.lc.ListVolumes(ctx)
				if err != nil {
					return err
				}
				switch {
				case format == "json":
					out := make([]volumeEntry, 0, len(vs))
					for _, v := range vs {
						out = append(out, newVolumeEntry(v))
					}
					return printJSON(out)
				case quiet:
					for _, v := range vs {
						fmt.Println(v.Name)
					}
					return nil
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
				fmt.Fprintln(tw, "DRIVER\tVOLUME NAME")
				for _, v := range vs {
					fmt.Fprintf(tw, "%s\t%s\n", v.Driver, v.Name)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only volume names")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json (an array)")
	return cmd
}

func newVolumeInspectCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect VOLUME...",
		Short: "Show volumes as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				out := make([]volumeEntry, 0, len(args))
				for _, name := range args {
					v, err := p.lc.InspectVolume(ctx, name)
					if err != nil {
						return err
					}
					out = append(out, newVolumeEntry(v))
				}
				return printJSON(out)
			})
		},
	}
}

func newVolumeRmCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm [OPTIONS] VOLUME...",
		Aliases: []string{"remove"},
		Short:   "Remove volumes and their data (never one a container uses)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				return eachRef(args, func(name string) error { return p.lc.RemoveVolume(ctx, name, force) })
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not fail for a volume that does not exist")
	return cmd
}

func newVolumePruneCommand(g *globals) *cobra.Command {
	var force, all bool
	cmd := &cobra.Command{
		Use:   "prune [OPTIONS]",
		Short: "Remove the anonymous volumes no container uses (with -a, every unused volume)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if !force {
				what := "every anonymous volume"
				if all {
					what = "every volume"
				}
				if !confirm(fmt.Sprintf("This removes %s no container uses, with its data.", what)) {
					return errors.New("prune cancelled (give -f to skip the question)")
				}
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				rep, err := p.lc.PruneVolumes(ctx, all)
				printVolumePrune(rep)
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "remove named volumes too, not only anonymous ones")
	return cmd
}

func printVolumePrune(rep lifecycle.VolumePruneReport) {
	if len(rep.Removed) > 0 {
		fmt.Println("Deleted Volumes:")
		for _, n := range rep.Removed {
			fmt.Println(n)
		}
	}
	fmt.Printf("Total reclaimed space: %s\n", humanSize(int64(rep.ReclaimedBytes)))
}

// confirm asks question on the terminal and reports whether the answer
// was yes.
func confirm(question string) bool {
	fmt.Printf("%s\nContinue? [y/N] ", question)
	answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	a := strings.ToLower(strings.TrimSpace(answer))
	return a == "y" || a == "yes"
}
