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

	"github.com/berth-dev/berth/sdk/images"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// diskUsage is `berth system df --format json`.
type diskUsage struct {
	Images struct {
		// Count is distinct images (platform manifests), Active those a
		// container was created from.
		Count, Active int
		// Size sums the stored size of each image (layers shared by images
		// count once per image, as `berth images` lists them); Reclaimable
		// is the part of images no container uses.
		Size, Reclaimable int64
	}
	Containers struct {
		Count, Running int
	}
}

func collectDiskUsage(ctx context.Context, p *publicAPI) (diskUsage, error) {
	var du diskUsage
	containers, err := p.lc.List(ctx, lifecycle.Filter{All: true})
	if err != nil {
		return du, err
	}
	used := map[string]bool{}
	for _, c := range containers {
		du.Containers.Count++
		if c.State == lifecycle.StateRunning || c.State == lifecycle.StatePaused {
			du.Containers.Running++
		}
		used[c.ImageDigest] = true
	}
	list, err := p.images.List(ctx)
	if err != nil {
		return du, err
	}
	seen := map[string]bool{}
	for _, i := range list {
		if seen[i.Digest] {
			continue
		}
		seen[i.Digest] = true
		du.Images.Count++
		du.Images.Size += i.Size
		if used[i.Digest] {
			du.Images.Active++
		} else {
			du.Images.Reclaimable += i.Size
		}
	}
	return du, nil
}

func newSystemDfCommand(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "df",
		Short: "Show the disk space images use and the containers there are",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				du, err := collectDiskUsage(ctx, p)
				if err != nil {
					return err
				}
				if format == "json" {
					return printJSON(du)
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
				fmt.Fprintln(tw, "TYPE\tTOTAL\tACTIVE\tSIZE\tRECLAIMABLE")
				fmt.Fprintf(tw, "Images\t%d\t%d\t%s\t%s\n", du.Images.Count, du.Images.Active, humanSize(du.Images.Size), humanSize(du.Images.Reclaimable))
				fmt.Fprintf(tw, "Containers\t%d\t%d\t-\t-\n", du.Containers.Count, du.Containers.Running)
				return tw.Flush()
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json")
	return cmd
}

// stoppedContainers are the containers prune removes: stopped ones and
// ones created but never started.
func stoppedContainers(ctx context.Context, p *publicAPI) ([]string, error) {
	list, err := p.lc.List(ctx, lifecycle.Filter{All: true, States: []lifecycle.State{lifecycle.StateStopped, lifecycle.StateCreated}})
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, ct := range list {
		if ct.State == lifecycle.StateStopped || ct.State == lifecycle.StateCreated {
			ids = append(ids, ct.ID)
		}
	}
	return ids, nil
}

func newSystemPruneCommand(g *globals) *cobra.Command {
	var force, all, volumes bool
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove stopped containers, then image data no name and no container uses",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if !force {
				what := "all image data no image name and no container uses"
				if all {
					what = "every image no container uses (names included)"
				}
				if volumes {
					what += ", and the anonymous volumes no container uses"
				}
				fmt.Printf("This removes every stopped container, then %s.\nContinue? [y/N] ", what)
				answer, _ := bufio.NewReader(os.Stdin).ReadString('\n')
				if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
					return errors.New("prune cancelled (give -f to skip the question)")
				}
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				ids, err := stoppedContainers(ctx, p)
				if err != nil {
					return err
				}
				failed := false
				if len(ids) > 0 {
					fmt.Println("Deleted containers:")
					// A container that fails to go stays; the images it
					// uses stay with it, the rest is still pruned.
					if err := eachRef(ids, func(id string) error { return p.lc.Delete(ctx, id, false) }); err != nil {
						failed = true
					}
				}
				var removed images.RemoveResult
				if all {
					if removed, err = untagUnusedImages(ctx, p); err != nil {
						return err
					}
				}
				res, err := p.images.Prune(ctx)
				if err != nil {
					return err
				}
				res.Untagged = append(removed.Untagged, res.Untagged...)
				res.Deleted = append(removed.Deleted, res.Deleted...)
				res.BytesFreed += removed.BytesFreed
				if len(res.Untagged) > 0 {
					fmt.Println("Untagged images:")
					for _, n := range res.Untagged {
						fmt.Println(n)
					}
				}
				if len(res.Deleted) > 0 {
					fmt.Println("Deleted image data:")
					for _, d := range res.Deleted {
						fmt.Println(d)
					}
				}
				fmt.Printf("Total reclaimed space: %s (%d bytes of image data)\n", humanSize(res.BytesFreed), res.BytesFreed)
				if volumes {
					rep, err := p.lc.PruneVolumes(ctx, false)
					printVolumePrune(rep)
					if err != nil {
						return err
					}
				}
				if failed {
					return exitError(1)
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	cmd.Flags().BoolVarP(&all, "all", "a", false, "also remove named images no container uses")
	cmd.Flags().BoolVar(&volumes, "volumes", false, "also remove anonymous volumes no container uses")
	return cmd
}

// untagUnusedImages removes the names of every image no container (in any
// state) was created from, so the prune that follows deletes their data.
func untagUnusedImages(ctx context.Context, p *publicAPI) (images.RemoveResult, error) {
	var out images.RemoveResult
	cs, err := p.lc.List(ctx, lifecycle.Filter{All: true})
	if err != nil {
		return out, err
	}
	used := map[string]bool{}
	for _, c := range cs {
		used[c.ImageDigest] = true
	}
	list, err := p.images.List(ctx)
	if err != nil {
		return out, err
	}
	for _, i := range list {
		if i.Name == "" || used[i.Digest] {
			continue
		}
		res, err := p.images.Remove(ctx, i.Name, images.RemoveOptions{})
		if err != nil {
			return out, fmt.Errorf("remove image %s: %w", i.Name, err)
		}
		out.Untagged = append(out.Untagged, res.Untagged...)
		out.Deleted = append(out.Deleted, res.Deleted...)
		out.BytesFreed += res.BytesFreed
	}
	return out, nil
}
