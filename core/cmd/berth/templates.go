package main

import (
	"fmt"
	"io"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/vmtemplate"
)

// newSystemTemplatesCommand is `berth system templates`: the pre-booted VM
// templates isolation-vm starts containers from (issue 10), kept in
// <state_dir>/plugins/isolation-vm/templates. Like `system kernel` it works
// on the files directly (no daemon needed; root, as the state dir is
// root's): the plugin builds a missing template in the background at the
// next VM container start, so rebuild is a removal.
func newSystemTemplatesCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "templates",
		Short: "Manage the pre-booted VM templates VM containers start from",
		Long: `Manage the pre-booted VM templates VM isolation starts containers from
(<state_dir>/plugins/isolation-vm/templates, with "templates = true" in the
plugin's block of config.hcl). A template is one per kernel, initramfs, kernel
command line, VM size, machine and qemu version; the plugin builds a missing one
in the background when a VM container is created (that container boots cold)
and drops the ones a new build supersedes.`,
	}
	cmd.AddCommand(newTemplatesLsCommand(g), newTemplatesRmCommand(g), newTemplatesRebuildCommand(g))
	return cmd
}

// templateStore opens the template store under the configured state dir.
func (g *globals) templateStore() (*vmtemplate.Store, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	return &vmtemplate.Store{Dir: filepath.Join(cfg.Berth.StateDir, "plugins", "isolation-vm", "templates")}, nil
}

func newTemplatesLsCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls",
		Short: "List the VM templates",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			store, err := g.templateStore()
			if err != nil {
				return err
			}
			return runTemplatesLs(store, c.OutOrStdout())
		},
	}
}

func runTemplatesLs(store *vmtemplate.Store, out io.Writer) error {
	entries, err := store.List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "ID\tPLATFORM\tCPUS\tMEMORY\tKERNEL\tINITRD\tCREATED\tDISK\tSTATUS")
	for _, e := range entries {
		status := "ok"
		if e.Err != nil {
			status = "unusable: " + e.Err.Error()
		}
		if e.Manifest == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t%s\t%s\n", e.ID, humanBytes(e.DiskBytes), status)
			continue
		}
		in := e.Manifest.Inputs
		fmt.Fprintf(tw, "%s\t%s/%s\t%d\t%dMiB\t%s\t%s\t%s\t%s\t%s\n", e.ID, in.Platform, in.Accel, in.CPUs, in.MemoryMiB,
			short(in.KernelSHA256), short(in.InitrdSHA256), e.Manifest.Created.Local().Format(time.DateTime),
			humanBytes(e.DiskBytes), status)
	}
	return tw.Flush()
}

func short(h string) string { return h[:min(12, len(h))] }

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}

func newTemplatesRmCommand(g *globals) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "rm ID... | --all",
		Short: "Remove VM templates (removing one that is not there is not an error)",
		RunE: func(c *cobra.Command, args []string) error {
			store, err := g.templateStore()
			if err != nil {
				return err
			}
			return runTemplatesRm(store, args, all, c.OutOrStdout())
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "remove every template")
	return cmd
}

func newTemplatesRebuildCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "rebuild [ID...]",
		Short: "Drop VM templates (all by default) so the plugin builds them afresh at the next VM container start",
		RunE: func(c *cobra.Command, args []string) error {
			store, err := g.templateStore()
			if err != nil {
				return err
			}
			if err := runTemplatesRm(store, args, len(args) == 0, c.OutOrStdout()); err != nil {
				return err
			}
			fmt.Fprintln(c.OutOrStdout(), "the next VM container start builds the template again (in the background; that container boots cold)")
			return nil
		},
	}
}

// runTemplatesRm removes the given templates, or all of them (and the
// leftovers of interrupted builds) with all.
func runTemplatesRm(store *vmtemplate.Store, ids []string, all bool, out io.Writer) error {
	if all == (len(ids) > 0) {
		return fmt.Errorf("give template IDs or --all (see berth system templates ls)")
	}
	if all {
		removed, err := store.Prune()
		for _, id := range removed {
			fmt.Fprintln(out, id)
		}
		return err
	}
	for _, id := range ids {
		if err := store.Remove(id); err != nil {
			return err
		}
		fmt.Fprintln(out, id)
	}
	return nil
}
