package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/sdk/images"
)

// addImageCommands adds the image commands: `berth image …` and the
// Docker-style shortcuts (pull, push, images, tag, rmi, save, load).
func addImageCommands(root *cobra.Command, g *globals) {
	image := &cobra.Command{Use: "image", Short: "Manage images"}
	image.AddCommand(
		newPullCommand(g), newPushCommand(g), newImagesCommand(g, "ls"), newInspectCommand(g),
		newTagCommand(g, "tag"), newRmiCommand(g, "rm"), newSaveCommand(g), newLoadCommand(g),
		newPruneCommand(g), newImportCommand(g),
	)
	root.AddCommand(image,
		newPullCommand(g), newPushCommand(g), newImagesCommand(g, "images"), newTagCommand(g, "tag"),
		newRmiCommand(g, "rmi"), newSaveCommand(g), newLoadCommand(g), newRegistryCommand(g),
	)
}

// imageService returns the image service of the public API (api-grpc).
func imageService(ctx context.Context, g *globals) (*images.Client, func(), error) {
	cfg, err := g.loadConfig()
	if err != nil {
		return nil, nil, err
	}
	conn, err := dialPublic(ctx, cfg, publicAPIWait)
	if err != nil {
		return nil, nil, err
	}
	return images.NewClient(conn), func() { _ = conn.Close() }, nil
}

// withImages runs fn with the image service.
func withImages(c *cobra.Command, g *globals, fn func(ctx context.Context, svc *images.Client) error) error {
	ctx := c.Context()
	svc, closeFn, err := imageService(ctx, g)
	if err != nil {
		return err
	}
	defer closeFn()
	return fn(ctx, svc)
}

func parsePlatform(s string) (images.Platform, error) {
	if s == "" {
		return images.Platform{}, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return images.Platform{}, fmt.Errorf("--platform %q: want os/arch or os/arch/variant, like linux/arm64", s)
	}
	p := images.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}

func newPullCommand(g *globals) *cobra.Command {
	var platform string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from a registry (alpine means docker.io/library/alpine:latest)",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			plat, err := parsePlatform(platform)
			if err != nil {
				return err
			}
			return withImages(c, g, func(ctx context.Context, svc *images.Client) error {
				pr := newProgressPrinter(os.Stdout, quiet)
				img, err := svc.Pull(ctx, args[0], images.PullOptions{Platform: plat}, pr.update)
				pr.finish()
				if err != nil {
					return err
				}
				if quiet {
					fmt.Println(img.Name)
					return nil
				}
				fmt.Printf("Pulled %s (%s, %s, %s)\n", img.Name, img.Digest, platformOrDash(img.Platform), humanSize(img.Size))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&platform, "platform", "", "platform to pull from a multi-arch image, os/arch[/variant] (default linux/<host arch>)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the image name")
	return cmd
}

func newPushCommand(g *globals) *cobra.Command {
	var quiet bool
	cmd := &cobra.Command{
		Use:   "push REF",
		Short: "Push an image to the registry its name points at",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withImages(c, g, func(ctx context.Context, svc *images.Client) error {
				pr := newProgressPrinter(os.Stdout, quiet)
				err := svc.Push(ctx, args[0], images.PushOptions{}, pr.update)
				pr.finish()
				if err != nil {
					return err
				}
				if !quiet {
					fmt.Printf("Pushed %s\n", args[0])
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print nothing on success")
	return cmd
}

func newImagesCommand(g *globals, use string) *cobra.Command {
	var format string
	var quiet bool
	cmd := &cobra.Command{
		Use:   use,
		Short: "List images",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return withImages(c, g, func(ctx context.Context, svc *images.Client) error {
				list, err := svc.List(ctx)
				if err != nil {
					return err
				}
				switch {
				case format == "json":
					return printJSON(list)
				case format != "table":
					return fmt.Errorf("--format %q: want table or json", format)
				case quiet:
					for _, i := range list {
						fmt.Println(shortID(i.Digest))
					}
					return nil
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
				fmt.Fprintln(tw, "REPOSITORY\tTAG\tDIGEST\tPLATFORM\tSIZE\tCREATED")
				for _, i := range list {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", i.Repository, orNone(i.Tag), shortID(i.Digest), platformOrDash(i.Platform), humanSize(i.Size), ago(i.Created))
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only image IDs")
	return cmd
}

func newInspectCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect REF...",
		Short: "Show an image's config, layers and platform as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withImages(c, g, func(ctx context.Context, svc *images.Client) error {
				var out []inspectView
				for _, a := range args {
					d, err := svc.Inspect(ctx, a)
					if err != nil {
						return err
					}
					out = append(out, newInspectView(d))
				}
				return printJSON(out)
			})
		},
	}
}

// inspectView is `image inspect`'s JSON: the detail with the raw blobs
// decoded rather than base64.
type inspectView struct {
	images.Image
	Names        []string
	Config       images.Config
	Layers       []images.Layer
	ConfigDigest string
}

func newInspectView(d images.Detail) inspectView {
	return inspectView{Image: d.Image, Names: d.Names, Config: d.Config, Layers: d.Layers, ConfigDigest: d.ConfigDigest}
}

func newTagCommand(g *globals, use string) *cobra.Command {
	return &cobra.Command{
		Use:   use + " SOURCE TARGET",
		Short: "Give an image another name",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			return withImages(c, g, func(ctx context.Context, svc *images.Client) error {
				_, err := svc.Tag(ctx, args[0], args[1])
				return err
			})
		},
	}
}

func newRmiCommand(g *globals, use string) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   use + " REF...",
		Short: "Remove image names, and the images no name or container uses any more",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withImages(c, g, func(ctx context.Context, svc *images.Client) error {
				var failed error
				for _, a := range args {
					res, err := svc.Remove(ctx, a, images.RemoveOptions{Force: force})
					if err != nil {
						fmt.Fprintln(os.Stderr, "berth:", err)
						failed = exitError(1)
						continue
					}
					for _, u := range res.Untagged {
						fmt.Println("Untagged:", u)
					}
					for _, d := range res.Deleted {
						fmt.Println("Deleted:", d)
					}
				}
				return failed
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove the name even when a container uses the image")
	return cmd
}

func newSaveCommand(g *globals) *cobra.Command {
	var output, format string
	cmd := &cobra.Command{
		Use:   "save -o FILE REF...",
		Short: "Write images to an archive (OCI layout tar, or docker-save with --format docker)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			if output == "" {
				return errors.New("save: give the archive with -o FILE")
			}
			return withImages(c, g, func(ctx context.Context, svc *images.Client) error {
				return writeAtomically(output, func(w io.Writer) error {
					return svc.Save(ctx, args, images.SaveOptions{Format: format}, w)
				})
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "archive to write")
	cmd.Flags().StringVar(&format, "format", images.FormatOCI, "archive format: oci or docker")
	return cmd
}

// writeAtomically writes path through a temp file renamed into place, so a
// failed save leaves no half archive.
func writeAtomically(path string, fn func(w io.Writer) error) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := fn(tmp); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func newLoadCommand(g *globals) *cobra.Command {
	var input string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "load [-i FILE]",
		Short: "Load images from an archive (OCI layout tar or docker-save; stdin by default)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			var r io.Reader = os.Stdin
			if input != "" && input != "-" {
				f, err := os.Open(input)
				if err != nil {
					return fmt.Errorf("load: %w", err)
				}
				defer f.Close()
				r = f
			}
			return withImages(c, g, func(ctx context.Context, svc *images.Client) error {
				loaded, err := svc.Load(ctx, r)
				if err != nil {
					return err
				}
				for _, i := range loaded {
					if quiet {
						fmt.Println(i.Name)
					} else {
						fmt.Printf("Loaded image: %s (%s)\n", i.Name, i.Digest)
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", "archive to read (default stdin)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the names loaded")
	return cmd
}

func newPruneCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Delete every blob no image name and no container uses",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			return withImages(c, g, func(ctx context.Context, svc *images.Client) error {
				res, err := svc.Prune(ctx)
				if err != nil {
					return err
				}
				for _, d := range res.Deleted {
					fmt.Println("Deleted:", d)
				}
				fmt.Printf("Total reclaimed space: %s\n", humanSize(res.BytesFreed))
				return nil
			})
		},
	}
}

func newImportCommand(g *globals) *cobra.Command {
	var cfg images.Config
	var platform string
	cmd := &cobra.Command{
		Use:   "import DIR NAME",
		Short: "Make a one-layer image from a root filesystem directory",
		Args:  cobra.ExactArgs(2),
		RunE: func(c *cobra.Command, args []string) error {
			dir, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			plat, err := parsePlatform(platform)
			if err != nil {
				return err
			}
			return withImages(c, g, func(ctx context.Context, svc *images.Client) error {
				img, err := svc.Import(ctx, images.ImportOptions{Dir: dir, Name: args[1], Config: cfg, Platform: plat})
				if err != nil {
					return err
				}
				fmt.Printf("Imported %s (%s, %s)\n", img.Name, img.Digest, humanSize(img.Size))
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&cfg.Entrypoint, "entrypoint", nil, "entrypoint (comma-separated argv)")
	f.StringSliceVar(&cfg.Cmd, "cmd", nil, "default command (comma-separated argv)")
	f.StringArrayVar(&cfg.Env, "env", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringVar(&cfg.WorkingDir, "workdir", "", "working directory")
	f.StringVar(&cfg.User, "user", "", "user[:group]")
	f.StringVar(&platform, "platform", "", "platform the image runs on (default linux/<host arch>)")
	return cmd
}

func shortID(d string) string {
	h := strings.TrimPrefix(d, "sha256:")
	if len(h) > 12 {
		h = h[:12]
	}
	return h
}

func platformOrDash(p images.Platform) string {
	if p.OS == "" && p.Architecture == "" {
		return "-"
	}
	return p.String()
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

func humanSize(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}

func ago(t time.Time) string {
	if t.IsZero() || t.Unix() <= 0 {
		return "-"
	}
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return fmt.Sprintf("%d minutes ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours ago", int(d.Hours()))
	default:
		return fmt.Sprintf("%d days ago", int(d.Hours()/24))
	}
}
