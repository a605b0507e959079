package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/core/config"
	"github.com/berth-dev/berth/core/daemon"
	"github.com/berth-dev/berth/sdk/api"
)

// daemonStartWait bounds how long `system start` waits for the daemon.
const daemonStartWait = 90 * time.Second

func newSystemCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "system", Short: "Manage the Berth daemon"}
	var foreground bool
	start := &cobra.Command{
		Use:   "start",
		Short: "Start the daemon (in the background unless --foreground)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			if foreground {
				return runForeground(c.Context(), g)
			}
			return startBackground(c.Context(), g)
		},
	}
	start.Flags().BoolVar(&foreground, "foreground", false, "run the daemon in this process, logging to stderr")
	var format string
	status := &cobra.Command{
		Use:   "status",
		Short: "Show the daemon's status and plugins",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			sys, closeFn, err := adminClient(c.Context(), cfg)
			if err != nil {
				return err
			}
			defer closeFn()
			st, err := sys.Status(c.Context())
			if err != nil {
				return err
			}
			if format == "json" {
				return printJSON(st)
			}
			printStatus(st)
			return nil
		},
	}
	status.Flags().StringVar(&format, "format", "table", "output format: table or json")
	stop := &cobra.Command{
		Use:   "stop",
		Short: "Stop the daemon and its plugins (containers keep running)",
		Args:  cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig()
			if err != nil {
				return err
			}
			return stopDaemon(c.Context(), cfg)
		},
	}
	cmd.AddCommand(start, status, stop)
	return cmd
}

// runForeground runs the daemon in this process until SIGINT or SIGTERM.
func runForeground(ctx context.Context, g *globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	log := hclog.New(&hclog.LoggerOptions{
		Name:   "berthd",
		Level:  hclog.LevelFromString(cfg.Berth.LogLevel),
		Output: os.Stderr,
	})
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := daemon.Run(ctx, daemon.Options{Config: cfg, Logger: log, NetworkHelper: networkHelperArgs(), UsernetHelper: usernetHelperArgs()}); err != nil {
		log.Error("daemon failed", "error", err)
		return err
	}
	return nil
}

// startBackground starts the daemon as a detached process logging to the
// log file, and waits until its admin socket answers or it dies.
func startBackground(ctx context.Context, g *globals) error {
	cfg, err := g.loadConfig()
	if err != nil {
		return err
	}
	if sys, closeFn, err := adminClient(ctx, cfg); err == nil {
		defer closeFn()
		st, err := sys.Status(ctx)
		if err == nil {
			fmt.Printf("berth daemon already running (pid %d)\n", st.Pid)
			return nil
		}
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	logPath := cfg.Berth.LogFile
	if err := os.MkdirAll(filepath.Dir(logPath), 0o711); err != nil {
		return err
	}
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open daemon log: %w", err)
	}
	defer logFile.Close()
	logStart, _ := logFile.Seek(0, 2)

	child := exec.Command(exe, "system", "start", "--foreground", "--config", cfg.Filename)
	child.Stdout, child.Stderr = logFile, logFile
	child.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := child.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- child.Wait() }()

	deadline := time.After(daemonStartWait)
	for {
		select {
		case err := <-exited:
			fmt.Fprintf(os.Stderr, "berth daemon failed to start (%v); its log (%s) says:\n%s", err, logPath, logTail(logPath, logStart, 30))
			return exitError(1)
		case <-deadline:
			return fmt.Errorf("daemon (pid %d) did not become ready within %s; see %s", child.Process.Pid, daemonStartWait, logPath)
		case <-time.After(200 * time.Millisecond):
		}
		sys, closeFn, err := adminClient(ctx, cfg)
		if err != nil {
			continue
		}
		st, err := sys.Status(ctx)
		closeFn()
		if err != nil || !allStarted(st.Plugins) {
			continue
		}
		fmt.Printf("berth daemon started (pid %d); logs: %s\n", st.Pid, logPath)
		return nil
	}
}

// allStarted reports whether no plugin is still starting.
func allStarted(ps []api.PluginStatus) bool {
	for _, p := range ps {
		if p.Health == api.HealthStarting {
			return false
		}
	}
	return true
}

// logTail returns the last n lines written to path after offset.
func logTail(path string, offset int64, n int) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b[offset:]), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

// stopDaemon asks the daemon to shut down and waits for it to exit.
func stopDaemon(ctx context.Context, cfg *config.Config) error {
	sys, closeFn, err := adminClient(ctx, cfg)
	if err != nil {
		fmt.Println("no berth daemon is running")
		return nil
	}
	defer closeFn()
	st, err := sys.Status(ctx)
	if err != nil {
		return err
	}
	if err := sys.Shutdown(ctx); err != nil {
		return err
	}
	deadline := time.Now().Add(60 * time.Second)
	for processAlive(st.Pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("daemon (pid %d) is still running 60s after the shutdown request", st.Pid)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("berth daemon stopped (pid %d)\n", st.Pid)
	return nil
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true // no procfs (darwin): kill(0) said it exists
	}
	fields := strings.Fields(string(b))
	return len(fields) < 3 || fields[2] != "Z"
}

func printStatus(st api.Status) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(w, "Version:\t%s (%s, %s/%s)\n", st.Version.Version, st.Version.Commit, st.Version.OS, st.Version.Arch)
	fmt.Fprintf(w, "Pid:\t%d\n", st.Pid)
	fmt.Fprintf(w, "Up:\t%s\n", time.Since(st.StartedAt).Round(time.Second))
	fmt.Fprintf(w, "Config:\t%s\n", st.ConfigFile)
	fmt.Fprintf(w, "State dir:\t%s\n", st.StateDir)
	fmt.Fprintf(w, "Runtime dir:\t%s\n", st.RuntimeDir)
	fmt.Fprintf(w, "Admin socket:\t%s\n", st.AdminSocket)
	for _, e := range st.Endpoints {
		fmt.Fprintf(w, "API (%s):\t%s\n", e.Kind, e.Address)
	}
	_ = w.Flush()
	fmt.Println()
	printPlugins(st.Plugins)
}

func printPlugins(ps []api.PluginStatus) {
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "LAYER\tNAME\tVERSION\tPID\tHEALTH\tRESTARTS\tDEFAULT\tPATH")
	for _, p := range ps {
		pid := "-"
		if p.Pid > 0 {
			pid = fmt.Sprint(p.Pid)
		}
		def := ""
		if p.Default {
			def = "*"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", p.Layer, p.Name, orDash(p.Version), pid, p.Health, p.Restarts, def, p.Path)
	}
	_ = w.Flush()
	for _, p := range ps {
		if p.LastError != "" && p.Health != api.HealthHealthy {
			fmt.Printf("%s/%s: %s\n", p.Layer, p.Name, p.LastError)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
