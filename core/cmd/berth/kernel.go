package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/internal/vmkernel"
)

// newSystemKernelCommand is `berth system kernel`: the guest kernels VM
// isolation boots, kept in <state_dir>/kernels. It works on the local
// store directly (no daemon needed); installing needs write access there.
func newSystemKernelCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kernel",
		Short: "Manage the guest kernels VM isolation boots",
		Long: `Manage the guest kernels VM isolation boots, taken from Debian's kernel
packages without installing them on the host (<state_dir>/kernels).

On Debian or Ubuntu hosts, install fetches the package with apt-get download
(another arch needs: dpkg --add-architecture ARCH && apt-get update). Elsewhere
(macOS) give the .deb itself: --deb FILE, or --url URL of a
linux-image-<version>-cloud-arm64 .deb from a Debian mirror's pool/main/l/linux/
directory (with --sha256 from the mirror's Packages index).`,
	}
	cmd.AddCommand(newKernelInstallCommand(g), newKernelLsCommand(g), newKernelRmCommand(g))
	return cmd
}

// kernelStore opens the store under the configured state dir.
func (g *globals) kernelStore() (*vmkernel.Store, error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, err
	}
	return &vmkernel.Store{Dir: vmkernel.DefaultDir(cfg.Berth.StateDir)}, nil
}

func newKernelInstallCommand(g *globals) *cobra.Command {
	var opts vmkernel.InstallOptions
	cmd := &cobra.Command{
		Use:   "install [--arch amd64|arm64] [--deb FILE | --url URL | --package NAME] [--default]",
		Short: "Install a guest kernel from a Debian kernel package",
		Long: `Install a guest kernel from a Debian kernel package. Without --deb, --url or
--package it fetches linux-image-<arch> (amd64) or linux-image-cloud-arm64
(arm64) with apt-get download. The first kernel of an arch becomes its default.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if opts.Deb == "" && opts.URL == "" && opts.Package == "" {
				opts.Package = defaultKernelPackage(opts.Arch)
			}
			store, err := g.kernelStore()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(c.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runKernelInstall(ctx, store, opts, c.OutOrStdout(), c.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.Arch, "arch", "", "kernel architecture: amd64 or arm64 (default: the package's, or this machine's)")
	f.StringVar(&opts.Deb, "deb", "", "install from this local .deb file")
	f.StringVar(&opts.URL, "url", "", "download the .deb from this http(s) URL")
	f.StringVar(&opts.SHA256, "sha256", "", "expected sha256 of the .deb (hex)")
	f.StringVar(&opts.Package, "package", "", "fetch this Debian package with apt-get download (a metapackage is followed to its linux-image-<version>)")
	f.BoolVar(&opts.Default, "default", false, "make it the default kernel of its arch")
	return cmd
}

// defaultKernelPackage is the metapackage install fetches when told nothing.
func defaultKernelPackage(arch string) string {
	if arch == "arm64" {
		return "linux-image-cloud-arm64"
	}
	return "linux-image-amd64"
}

func runKernelInstall(ctx context.Context, store *vmkernel.Store, opts vmkernel.InstallOptions, stdout, stderr io.Writer) error {
	opts.Progress = func(msg string) { fmt.Fprintln(stderr, msg) }
	k, err := store.Install(ctx, opts)
	if err != nil {
		return err
	}
	def := ""
	if k.Default {
		def = " (default)"
	}
	fmt.Fprintf(stdout, "%s %s%s\n", k.Release, k.Arch, def)
	return nil
}

func newKernelLsCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the installed guest kernels",
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			store, err := g.kernelStore()
			if err != nil {
				return err
			}
			return runKernelLs(store, c.OutOrStdout())
		},
	}
}

func runKernelLs(store *vmkernel.Store, out io.Writer) error {
	kernels, err := store.List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "RELEASE\tARCH\tDEFAULT\tPACKAGE VERSION\tMODULES\tCONTENT HASH")
	for _, k := range kernels {
		def := ""
		if k.Default {
			def = "*"
		}
		hash := k.ContentHash
		if len(hash) > 19 {
			hash = hash[:19]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\n", k.Release, k.Arch, def, k.Version, len(k.Modules), hash)
	}
	return tw.Flush()
}

func newKernelRmCommand(g *globals) *cobra.Command {
	var arch string
	cmd := &cobra.Command{
		Use:   "rm RELEASE...",
		Short: "Remove installed guest kernels (removing one not installed is not an error)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			store, err := g.kernelStore()
			if err != nil {
				return err
			}
			return runKernelRm(c.Context(), store, arch, args, c.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&arch, "arch", "", "architecture of the kernels (default: every arch that has the release)")
	return cmd
}

// runKernelRm removes each release (of arch, or of every arch that has it
// when arch is empty). A release not installed is not an error.
func runKernelRm(ctx context.Context, store *vmkernel.Store, arch string, releases []string, out io.Writer) error {
	installed, err := store.List()
	if err != nil {
		return err
	}
	for _, r := range releases {
		archs := []string{arch}
		if arch == "" {
			archs = nil
			for _, k := range installed {
				if k.Release == r {
					archs = append(archs, k.Arch)
				}
			}
		}
		for _, a := range archs {
			if err := store.Remove(ctx, r, a); err != nil {
				return err
			}
		}
		fmt.Fprintln(out, r)
	}
	return nil
}
