package config

import (
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
)

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "berth"},
		{Type: "plugin", LabelNames: []string{"layer", "name"}},
	},
}

var berthSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "state_dir"}, {Name: "runtime_dir"}, {Name: "plugin_dirs"}, {Name: "log_level"}, {Name: "log_file"},
		{Name: "insecure_registries"}, {Name: "pull_parallelism"}, {Name: "dns_upstreams"},
		{Name: "default_bridge"}, {Name: "default_subnet"}, {Name: "firewall"}, {Name: "network_datapath"},
	},
}

var envelopeSchema = func() *hcl.BodySchema {
	s := &hcl.BodySchema{}
	for _, name := range ReservedAttributes {
		s.Attributes = append(s.Attributes, hcl.AttributeSchema{Name: name})
	}
	return s
}()

// value evaluates a and converts it to ty. ok is false when a is absent or
// null, or on error (then a diagnostic is recorded).
func (d *decoder) value(a *hcl.Attribute, ty cty.Type) (cty.Value, bool) {
	if a == nil {
		return cty.NilVal, false
	}
	v, diags := a.Expr.Value(d.ctx)
	d.diags = append(d.diags, diags...)
	if diags.HasErrors() || v.IsNull() {
		return cty.NilVal, false
	}
	if !v.IsWhollyKnown() {
		d.errorf(a.Expr.Range(), "Unknown value", "The value of %q cannot be known when the config is loaded.", a.Name)
		return cty.NilVal, false
	}
	cv, err := convert.Convert(v, ty)
	if err != nil {
		d.diags = append(d.diags, &hcl.Diagnostic{
			Severity:    hcl.DiagError,
			Summary:     "Incorrect attribute value type",
			Detail:      fmt.Sprintf("Inappropriate value for attribute %q: %s.", a.Name, err),
			Subject:     a.Expr.Range().Ptr(),
			Expression:  a.Expr,
			EvalContext: d.ctx,
		})
		return cty.NilVal, false
	}
	return cv, true
}

func (d *decoder) str(a *hcl.Attribute, nonEmpty bool) (string, bool) {
	v, ok := d.value(a, cty.String)
	if !ok {
		return "", false
	}
	s := v.AsString()
	if nonEmpty && s == "" {
		d.errorf(a.Expr.Range(), "Empty value", "%s must not be empty; remove the attribute to use the default.", a.Name)
		return "", false
	}
	return s, true
}

func (d *decoder) boolean(a *hcl.Attribute) (bool, bool) {
	v, ok := d.value(a, cty.Bool)
	if !ok {
		return false, false
	}
	return v.True(), true
}

func (d *decoder) strList(a *hcl.Attribute) ([]string, bool) {
	v, ok := d.value(a, cty.List(cty.String))
	if !ok {
		return nil, false
	}
	var out []string
	if err := gocty.FromCtyValue(v, &out); err != nil {
		d.errorf(a.Expr.Range(), "Incorrect attribute value type", "Inappropriate value for attribute %q: %s.", a.Name, err)
		return nil, false
	}
	for _, s := range out {
		if s == "" {
			d.errorf(a.Expr.Range(), "Empty value", "%s must not contain empty strings.", a.Name)
			return nil, false
		}
	}
	if out == nil {
		out = []string{}
	}
	return out, true
}
