package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/core/config"
)

// globals are the flags every command shares.
type globals struct {
	configFile string
}

func newRootCommand() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "berth",
		Short:         "Berth runs OCI containers in sandboxes or micro-VMs",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.configFile, "config", "", "config file (default $BERTH_CONFIG, /etc/berth/config.hcl, or config.hcl beside the berth binary's bin/)")
	system := newSystemCommand(g)
	system.AddCommand(newSystemInstallCommand(g), newSystemDfCommand(g), newSystemPruneCommand(g), newNetworkHelperCommand(), newUsernetHelperCommand())
	system.AddCommand(newSystemKernelCommand(g))
	system.AddCommand(newSystemTemplatesCommand(g))
	root.AddCommand(system, newPluginCommand(g), newConfigCommand(g), newVersionCommand(g))
	addImageCommands(root, g)
	addContainerCommands(root, g)
	addNetworkCommands(root, g)
	return root
}

// configPath returns the config file to use: --config, $BERTH_CONFIG,
// /etc/berth/config.hcl, or the repository's config.hcl when berth runs
// from a checkout's bin/.
func (g *globals) configPath() (string, error) {
	if g.configFile != "" {
		return filepath.Abs(g.configFile)
	}
	if env := os.Getenv("BERTH_CONFIG"); env != "" {
		return filepath.Abs(env)
	}
	candidates := []string{"/etc/berth/config.hcl"}
	if exe, err := os.Executable(); err == nil {
		if exe, err = filepath.EvalSymlinks(exe); err == nil {
			candidates = append(candidates, filepath.Join(filepath.Dir(exe), "..", "config.hcl"))
		}
	}
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return filepath.Abs(c)
		}
	}
	return "", fmt.Errorf("no config file found (looked at %v); pass --config FILE or set BERTH_CONFIG", candidates)
}

// loadConfig loads the config file, printing its problems with source
// snippets.
func (g *globals) loadConfig() (*config.Config, error) {
	path, err := g.configPath()
	if err != nil {
		return nil, err
	}
	loader := config.NewLoader(config.Options{})
	cfg, diags := loader.LoadFile(path)
	if diags.HasErrors() {
		fmt.Fprint(os.Stderr, config.FormatDiagnostics(diags))
		return nil, exitError(1)
	}
	return cfg, nil
}
