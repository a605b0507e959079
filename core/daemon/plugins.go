package daemon

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"

	"github.com/berth-dev/berth/core/config"
	"github.com/berth-dev/berth/core/host"
	"github.com/berth-dev/berth/sdk/plugin"
	"github.com/berth-dev/berth/sdk/schema"
)

// FindBinary returns the binary of p: its path setting, else the first
// <layer>-<name> found in the configured plugin dirs.
func FindBinary(cfg *config.Config, p *config.Plugin) (string, error) {
	if p.Path != "" {
		if _, err := os.Stat(p.Path); err != nil {
			return "", fmt.Errorf("path %s: %w", p.Path, err)
		}
		return p.Path, nil
	}
	for _, dir := range cfg.Berth.PluginDirs {
		candidate := filepath.Join(dir, p.BinaryName())
		if st, err := os.Stat(candidate); err == nil && !st.IsDir() {
			return candidate, nil
		}
	}
	return "", fmt.Errorf("unknown plugin: no binary named %s in %v (build it with make build, or set path)", p.BinaryName(), cfg.Berth.PluginDirs)
}

// HostSpecs turns the enabled plugins of cfg into host specs. Problems
// (binary missing, bad checksum text) are diagnostics at the plugin's block.
// Each spec decodes its plugin's settings against the schema the plugin
// declares when it is launched.
func HostSpecs(cfg *config.Config) ([]host.Spec, hcl.Diagnostics) {
	var specs []host.Spec
	var diags hcl.Diagnostics
	for _, p := range cfg.Plugins {
		path, err := FindBinary(cfg, p)
		if err != nil {
			diags = append(diags, pluginDiag(p, err))
			continue
		}
		var sum []byte
		if p.SHA256 != "" {
			if sum, err = hex.DecodeString(p.SHA256); err != nil {
				diags = append(diags, pluginDiag(p, fmt.Errorf("sha256: %w", err)))
				continue
			}
		}
		s := host.Spec{
			Layer:        plugin.Layer(p.Layer),
			Name:         p.Name,
			Path:         path,
			SHA256:       sum,
			Default:      cfg.Default(p.Layer) == p,
			StartTimeout: p.StartTimeout,
			DecodeConfig: decoderFor(p),
		}
		if sn := cfg.SnapshotterFor(p); sn != nil {
			s.Snapshotter = sn.Name
		}
		specs = append(specs, s)
	}
	return specs, diags
}

// decoderFor decodes p's settings against a plugin's schema, turning
// diagnostics into an error that lists each with its position.
func decoderFor(p *config.Plugin) func(*schema.Spec) (schema.Config, error) {
	return func(spec *schema.Spec) (schema.Config, error) {
		cfg, diags := config.DecodePluginBody(p, spec)
		if diags.HasErrors() {
			return schema.Config{}, errors.New(config.FormatDiagnostics(diags))
		}
		return cfg, nil
	}
}

func pluginDiag(p *config.Plugin, err error) *hcl.Diagnostic {
	r := p.DeclRange
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Plugin not usable",
		Detail:   fmt.Sprintf("in %s: %v", p, err),
		Subject:  &r,
	}
}

// Validate checks cfg as the daemon would use it: every enabled plugin's
// binary is found and launched just long enough to read its schema, and its
// settings are decoded against that schema. All problems are returned, each
// with its position in the file.
func Validate(ctx context.Context, cfg *config.Config, opts host.Options) hcl.Diagnostics {
	specs, diags := HostSpecs(cfg)
	for _, s := range specs {
		p := cfg.Lookup(config.Layer(s.Layer), s.Name)
		info, spec, err := host.Probe(ctx, opts, s)
		if err != nil {
			diags = append(diags, pluginDiag(p, err))
			continue
		}
		if info.Layer != s.Layer {
			diags = append(diags, pluginDiag(p, fmt.Errorf("binary %s is a %q plugin", s.Path, info.Layer)))
			continue
		}
		_, d := config.DecodePluginBody(p, spec)
		diags = append(diags, d...)
	}
	return diags
}
