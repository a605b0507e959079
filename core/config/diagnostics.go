package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"

	"github.com/berth-dev/berth/sdk/schema"
)

// DecodePluginBody decodes p's own settings against the schema the plugin
// declared and returns them as the schema.Config sent to its Configure.
// Every diagnostic names the plugin (Detail starts `in plugin "<layer>"
// "<name>": `) and carries a range in config.hcl. An invalid spec, or one
// that claims an envelope attribute name, is reported at the plugin block
// as a bug in the plugin.
func DecodePluginBody(p *Plugin, spec *schema.Spec) (schema.Config, hcl.Diagnostics) {
	bug := func(format string, args ...any) hcl.Diagnostics {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Invalid plugin schema",
			Detail:   fmt.Sprintf("in %s: the plugin declares an unusable config schema (a bug in the plugin, not in this file): %s", p, fmt.Sprintf(format, args...)),
			Subject:  p.DeclRange.Ptr(),
		}}
	}
	if err := spec.Validate(); err != nil {
		return schema.Config{}, bug("%v", err)
	}
	for _, name := range specNames(spec) {
		if slices.Contains(ReservedAttributes, name) {
			return schema.Config{}, bug("it uses the name %q, which is reserved for the core in every plugin block", name)
		}
	}
	ds, err := spec.HCLDec()
	if err != nil {
		return schema.Config{}, bug("%v", err)
	}
	ctx := p.ctx
	if ctx == nil {
		ctx = NewEvalContext(Options{})
	}
	val, diags := hcldec.Decode(p.Body, ds, ctx)
	diags = wrapDiags(p, suggestEnvelope(diags))
	for _, d := range diags {
		if d.Subject == nil {
			d.Subject = p.DeclRange.Ptr()
		}
	}
	if diags.HasErrors() {
		return schema.Config{}, diags
	}
	c, err := schema.NewConfig(val)
	if err != nil {
		return schema.Config{}, append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Cannot encode plugin settings",
			Detail:   fmt.Sprintf("in %s: %v", p, err),
			Subject:  p.DeclRange.Ptr(),
		})
	}
	return c, diags
}

var unsupportedArgRE = regexp.MustCompile(`^An argument named "([^"]+)" is not expected here\.$`)

// suggestEnvelope adds "Did you mean" for a misspelled envelope attribute,
// which reaches the plugin's schema as an unknown setting.
func suggestEnvelope(diags hcl.Diagnostics) hcl.Diagnostics {
	for _, d := range diags {
		if m := unsupportedArgRE.FindStringSubmatch(d.Detail); m != nil {
			if s := suggest(m[1], ReservedAttributes); s != "" {
				d.Detail += fmt.Sprintf(" Did you mean %q?", s)
			}
		}
	}
	return diags
}

// specNames lists the attribute and block names the root of spec claims.
func specNames(spec *schema.Spec) []string {
	var names []string
	var walk func(s *schema.Spec)
	walk = func(s *schema.Spec) {
		switch {
		case s == nil:
		case s.Object != nil:
			for _, c := range s.Object.Attributes {
				walk(c)
			}
		case s.Attr != nil:
			names = append(names, s.Attr.Name)
		case s.Block != nil:
			names = append(names, s.Block.Name)
		case s.BlockList != nil:
			names = append(names, s.BlockList.Name)
		case s.BlockMap != nil:
			names = append(names, s.BlockMap.Name)
		case s.Default != nil:
			walk(s.Default.Primary)
			walk(s.Default.Default)
		}
	}
	walk(spec)
	return names
}

// wrapDiags returns copies of diags whose Detail starts with the plugin's name.
func wrapDiags(p *Plugin, diags hcl.Diagnostics) hcl.Diagnostics {
	out := make(hcl.Diagnostics, len(diags))
	prefix := fmt.Sprintf("in %s: ", p)
	for i, d := range diags {
		c := *d
		detail := c.Detail
		if detail == "" {
			detail = c.Summary
		}
		if !strings.HasPrefix(detail, prefix) {
			detail = prefix + detail
		}
		c.Detail = detail
		if c.Subject == nil {
			c.Subject = p.DeclRange.Ptr()
		}
		out[i] = &c
	}
	return out
}

// FormatDiagnostics renders one line per diagnostic:
//
//	config.hcl:12,3-8: in plugin "snapshot" "overlay": An argument named "bogus" is not expected here.
//
// The position is file:line,col-col, or file:line,col-line,col when the
// range spans lines. The text is the diagnostic's Detail (a full sentence),
// or its Summary when it has none; warnings are prefixed "warning: ".
func FormatDiagnostics(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		b.WriteString(FormatDiagnostic(d))
		b.WriteByte('\n')
	}
	return b.String()
}

// FormatDiagnostic renders one diagnostic as FormatDiagnostics does, without
// the newline.
func FormatDiagnostic(d *hcl.Diagnostic) string {
	var b strings.Builder
	if d.Subject != nil {
		b.WriteString(d.Subject.String())
		b.WriteString(": ")
	}
	if d.Severity == hcl.DiagWarning {
		b.WriteString("warning: ")
	}
	if d.Detail != "" {
		b.WriteString(d.Detail)
	} else {
		b.WriteString(d.Summary)
	}
	return b.String()
}
