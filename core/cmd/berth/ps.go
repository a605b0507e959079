package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/sdk/api"
	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/images"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// psEntry is one container of `ps --format json`.
type psEntry struct {
	ID           string
	Name         string
	Image        string
	ImageDigest  string
	Command      string
	State        lifecycle.State
	Status       string
	ExitCode     int
	Pid          int
	RestartCount int
	Isolation    string
	Labels       map[string]string
	CreatedAt    time.Time
	// Ports are the published ports, Docker's way: 127.0.0.1:8080->80/tcp.
	Ports []string `json:",omitempty"`
}

// commandOf is the command a container runs, Docker's way: its own
// entrypoint and command, else the image's (an entrypoint of its own drops
// the image's command too). image is nil when it is not known.
func commandOf(c lifecycle.Container, image *images.Config) string {
	entry, cmd := c.Config.Entrypoint, c.Config.Cmd
	if image != nil {
		if len(entry) == 0 {
			entry = image.Entrypoint
			if len(cmd) == 0 {
				cmd = image.Cmd
			}
		}
	}
	return strings.Join(append(append([]string{}, entry...), cmd...), " ")
}

// imageConfigs looks up the configs of the containers' images, once per
// image; an image it cannot inspect is left out.
func imageConfigs(ctx context.Context, p *publicAPI, list []lifecycle.Container) map[string]*images.Config {
	out := map[string]*images.Config{}
	for _, c := range list {
		if _, seen := out[c.ImageDigest]; seen || c.ImageDigest == "" {
			continue
		}
		out[c.ImageDigest] = nil
		if d, err := p.images.Inspect(ctx, c.ImageDigest); err == nil {
			out[c.ImageDigest] = &d.Config
		}
	}
	return out
}

func newPsEntry(c lifecycle.Container, image *images.Config) psEntry {
	return psEntry{
		ID: c.ID, Name: c.Name, Image: c.Config.Image, ImageDigest: c.ImageDigest,
		Command: commandOf(c, image),
		State:   c.State, Status: statusText(c), ExitCode: c.ExitCode, Pid: c.Pid,
		RestartCount: c.RestartCount, Isolation: c.Isolation, Labels: c.Config.Labels, CreatedAt: c.CreatedAt,
	}
}

// statusText is Docker's STATUS column: Up 5 minutes, Exited (0) 3 seconds ago.
func statusText(c lifecycle.Container) string {
	switch c.State {
	case lifecycle.StateRunning:
		return "Up " + duration(time.Since(c.StartedAt))
	case lifecycle.StatePaused:
		return "Up " + duration(time.Since(c.StartedAt)) + " (Paused)"
	case lifecycle.StateStopped:
		if c.Restarting {
			return fmt.Sprintf("Restarting (%d) %s ago", c.ExitCode, duration(time.Since(c.FinishedAt)))
		}
		if c.FinishedAt.IsZero() {
			return fmt.Sprintf("Exited (%d)", c.ExitCode)
		}
		s := fmt.Sprintf("Exited (%d) %s ago", c.ExitCode, duration(time.Since(c.FinishedAt)))
		if c.OOMKilled {
			s += " (OOM killed)"
		}
		return s
	case lifecycle.StateCreated:
		return "Created"
	case lifecycle.StateCheckpointed:
		return "Checkpointed"
	}
	return string(c.State)
}

func duration(d time.Duration) string {
	switch {
	case d < time.Second:
		return "less than a second"
	case d < time.Minute:
		return fmt.Sprintf("%d seconds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d minutes", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours", int(d.Hours()))
	}
	return fmt.Sprintf("%d days", int(d.Hours()/24))
}

func newPsCommand(g *globals) *cobra.Command {
	var all, quiet bool
	var format string
	cmd := &cobra.Command{
		Use:     "ps",
		Aliases: []string{"ls", "list"},
		Short:   "List containers (running ones; -a for all)",
		Args:    cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("--format %q: want table or json", format)
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				list, err := p.lc.List(ctx, lifecycle.Filter{All: all})
				if err != nil {
					return err
				}
				imageCfg := imageConfigs(ctx, p, list)
				entries := make([]psEntry, 0, len(list))
				ports := publishedPorts(ctx, p)
				for _, ct := range list {
					e := newPsEntry(ct, imageCfg[ct.ImageDigest])
					e.Ports = ports[ct.ID]
					entries = append(entries, e)
				}
				switch {
				case format == "json":
					return printJSON(entries)
				case quiet:
					for _, e := range entries {
						fmt.Println(shortID(e.ID))
					}
					return nil
				}
				tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
				fmt.Fprintln(tw, "CONTAINER ID\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS\tNAMES")
				for _, e := range entries {
					cmdText := e.Command
					if len(cmdText) > 22 {
						cmdText = cmdText[:21] + "…"
					}
					fmt.Fprintf(tw, "%s\t%s\t%q\t%s\t%s\t%s\t%s\n", shortID(e.ID), e.Image, cmdText, ago(e.CreatedAt), e.Status, strings.Join(e.Ports, ", "), e.Name)
				}
				return tw.Flush()
			})
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "include stopped and created containers")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only container IDs")
	cmd.Flags().StringVar(&format, "format", "table", "output format: table or json (an array)")
	return cmd
}

// newContainerInspectCommand is `berth inspect`: containers first, then
// images, as docker inspect.
func newContainerInspectCommand(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect NAME...",
		Short: "Show containers (or images) as JSON",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				var out []any
				for _, ref := range args {
					ct, err := p.lc.Get(ctx, ref)
					if err == nil {
						out = append(out, inspectContainer(ctx, p, ct))
						continue
					}
					if !errdefs.IsNotFound(err) {
						return err
					}
					d, ierr := p.images.Inspect(ctx, ref)
					if ierr != nil {
						return fmt.Errorf("no container or image named %s", ref)
					}
					out = append(out, newInspectView(d))
				}
				return printJSON(out)
			})
		},
	}
}

func newLogsCommand(g *globals) *cobra.Command {
	var follow, timestamps, boot bool
	var tail string
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] CONTAINER",
		Short: "Show a container's output",
		Args:  cobra.ExactArgs(1),
		RunE: func(c *cobra.Command, args []string) error {
			n := -1
			if tail != "all" {
				v, err := parseUint(tail)
				if err != nil {
					return fmt.Errorf("--tail %q: want a number or all", tail)
				}
				n = v
			}
			if boot && timestamps {
				return fmt.Errorf("--timestamps cannot be used with --boot: a boot log's lines have no times")
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				return printLogs(ctx, p, args[0], api.LogsOptions{Follow: follow, Tail: n, Boot: boot}, timestamps)
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the container stops")
	cmd.Flags().StringVarP(&tail, "tail", "n", "all", "lines to show from the end")
	cmd.Flags().BoolVarP(&timestamps, "timestamps", "t", false, "prefix each line with its time (RFC 3339, nanoseconds)")
	cmd.Flags().BoolVar(&boot, "boot", false, "show the guest console (kernel and agent) of a VM container instead of its output")
	return cmd
}

// printLogs writes a container's log to stdout and stderr, as it was
// written.
func printLogs(ctx context.Context, p *publicAPI, ref string, opts api.LogsOptions, timestamps bool) error {
	return p.logs.Logs(ctx, ref, opts, func(e api.LogEntry) error {
		w := os.Stdout
		if e.Stream == "stderr" {
			w = os.Stderr
		}
		if timestamps {
			if _, err := fmt.Fprintf(w, "%s ", e.Time.UTC().Format(time.RFC3339Nano)); err != nil {
				return err
			}
		}
		_, err := w.Write(e.Data)
		return err
	})
}

func newEventsCommand(g *globals) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Stream container events until interrupted",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if format != "text" && format != "json" {
				return fmt.Errorf("--format %q: want text or json", format)
			}
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				ch, err := p.lc.Events(ctx)
				if err != nil {
					return err
				}
				enc := json.NewEncoder(os.Stdout)
				for e := range ch {
					if format == "json" {
						if err := enc.Encode(e); err != nil {
							return err
						}
						continue
					}
					line := fmt.Sprintf("%s container %s %s (name=%s", e.Time.Format(time.RFC3339Nano), e.Kind, e.ContainerID, e.Name)
					if e.Kind == lifecycle.EventExit {
						line += fmt.Sprintf(", exitCode=%d", e.ExitCode)
					}
					for k, v := range e.Attributes {
						line += fmt.Sprintf(", %s=%s", k, v)
					}
					fmt.Println(line + ")")
				}
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&format, "format", "text", "output format: text or json (one object a line)")
	return cmd
}

func newStatsCommand(g *globals) *cobra.Command {
	var noStream bool
	cmd := &cobra.Command{
		Use:   "stats [CONTAINER...]",
		Short: "Show containers' resource use (all running ones by default)",
		RunE: func(c *cobra.Command, args []string) error {
			return withAPI(c, g, func(ctx context.Context, p *publicAPI) error {
				refs := args
				if len(refs) == 0 {
					list, err := p.lc.List(ctx, lifecycle.Filter{})
					if err != nil {
						return err
					}
					for _, ct := range list {
						refs = append(refs, ct.ID)
					}
				}
				type sample struct {
					cpu uint64
					at  time.Time
				}
				last := map[string]sample{}
				if noStream {
					// CPU % needs two samples.
					for _, ref := range refs {
						if s, err := p.lc.Stats(ctx, ref); err == nil {
							if ct, err := p.lc.Get(ctx, ref); err == nil {
								last[ct.ID] = sample{s.CPUUsageNanos, s.Time}
							}
						}
					}
					time.Sleep(500 * time.Millisecond)
				}
				for {
					tw := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
					fmt.Fprintln(tw, "CONTAINER ID\tNAME\tCPU %\tMEM USAGE\tMEM PEAK\tPIDS\tBLOCK I/O")
					for _, ref := range refs {
						ct, err := p.lc.Get(ctx, ref)
						if err != nil {
							return err
						}
						s, err := p.lc.Stats(ctx, ct.ID)
						if err != nil {
							return err
						}
						cpu := "--"
						if prev, ok := last[ct.ID]; ok && s.Time.After(prev.at) {
							cpu = fmt.Sprintf("%.2f%%", 100*float64(s.CPUUsageNanos-prev.cpu)/float64(s.Time.Sub(prev.at).Nanoseconds()))
						}
						last[ct.ID] = sample{s.CPUUsageNanos, s.Time}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s / %s\n", shortID(ct.ID), ct.Name, cpu,
							humanSize(int64(s.MemoryBytes)), humanSize(int64(s.MemoryPeakBytes)), s.Pids,
							humanSize(int64(s.IOReadBytes)), humanSize(int64(s.IOWriteBytes)))
					}
					if err := tw.Flush(); err != nil {
						return err
					}
					if noStream {
						return nil
					}
					select {
					case <-ctx.Done():
						return nil
					case <-time.After(time.Second):
					}
					fmt.Println()
				}
			})
		},
	}
	cmd.Flags().BoolVar(&noStream, "no-stream", false, "print one sample and exit")
	return cmd
}
