package schema

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Validate reports the first problem that would stop the spec from being
// used as a plugin's schema: a root that is not an Object, a node with no or
// several variants set, a bad type expression, a literal that does not fit
// its type, a name used twice in one body, a required attribute with a
// default, or bad block bounds. Errors name the path of the offending node.
func (s *Spec) Validate() error {
	if s == nil || s.Object == nil {
		return fmt.Errorf("schema: the root of a plugin schema must be an Object (use schema.Empty() for a plugin without settings)")
	}
	_, err := s.HCLDec()
	return err
}

// HCLDec converts the spec to the equivalent hcldec.Spec, checking it as it
// goes (see [Spec.Validate]; HCLDec does not require an Object root).
func (s *Spec) HCLDec() (hcldec.Spec, error) {
	return s.convert("", cty.NilType)
}

// convert turns s into an hcldec.Spec. path names s in errors; want is the
// type a Literal at this position must have (cty.NilType when unconstrained).
func (s *Spec) convert(path string, want cty.Type) (hcldec.Spec, error) {
	if s == nil {
		return nil, pathErr(path, "spec is nil")
	}
	if n := s.variants(); n != 1 {
		return nil, pathErr(path, "exactly one of object, attr, block, block_list, block_map, default, literal must be set, found %d", n)
	}
	switch {
	case s.Object != nil:
		return s.Object.convert(path)
	case s.Attr != nil:
		a := s.Attr
		if err := checkName(path, "attr", a.Name); err != nil {
			return nil, err
		}
		ty, err := parseType(a.Type)
		if err != nil {
			return nil, pathErr(path, "attr %q: %v", a.Name, err)
		}
		return &hcldec.AttrSpec{Name: a.Name, Type: ty, Required: a.Required}, nil
	case s.Block != nil:
		b := s.Block
		if err := checkName(path, "block", b.Name); err != nil {
			return nil, err
		}
		nested, err := b.Nested.convert(join(path, "nested"), cty.NilType)
		if err != nil {
			return nil, err
		}
		return &hcldec.BlockSpec{TypeName: b.Name, Required: b.Required, Nested: nested}, nil
	case s.BlockList != nil:
		b := s.BlockList
		if err := checkName(path, "block_list", b.Name); err != nil {
			return nil, err
		}
		if b.MinItems < 0 || b.MaxItems < 0 || (b.MaxItems > 0 && b.MinItems > b.MaxItems) {
			return nil, pathErr(path, "block_list %q: bad bounds min_items=%d max_items=%d (need 0 <= min <= max, max 0 = unbounded)", b.Name, b.MinItems, b.MaxItems)
		}
		nested, err := b.Nested.convert(join(path, "nested"), cty.NilType)
		if err != nil {
			return nil, err
		}
		return &hcldec.BlockListSpec{TypeName: b.Name, Nested: nested, MinItems: b.MinItems, MaxItems: b.MaxItems}, nil
	case s.BlockMap != nil:
		b := s.BlockMap
		if err := checkName(path, "block_map", b.Name); err != nil {
			return nil, err
		}
		if len(b.Labels) == 0 {
			return nil, pathErr(path, "block_map %q: needs at least one label name", b.Name)
		}
		for _, l := range b.Labels {
			if l == "" {
				return nil, pathErr(path, "block_map %q: label names must not be empty", b.Name)
			}
		}
		nested, err := b.Nested.convert(join(path, "nested"), cty.NilType)
		if err != nil {
			return nil, err
		}
		return &hcldec.BlockMapSpec{TypeName: b.Name, LabelNames: slices.Clone(b.Labels), Nested: nested}, nil
	case s.Default != nil:
		d := s.Default
		primary, err := d.Primary.convert(join(path, "primary"), want)
		if err != nil {
			return nil, err
		}
		if d.Primary.Attr != nil && d.Primary.Attr.Required {
			return nil, pathErr(path, "attr %q is required, so its default can never apply; make it optional", d.Primary.Attr.Name)
		}
		def, err := d.Default.convert(join(path, "default"), hcldec.ImpliedType(primary))
		if err != nil {
			return nil, err
		}
		return &hcldec.DefaultSpec{Primary: primary, Default: def}, nil
	default:
		l := s.Literal
		v, err := literalValue(l.Value)
		if err == nil && l.Type != "" {
			var ty cty.Type
			if ty, err = parseType(l.Type); err == nil {
				v, err = convertTo(v, ty)
			}
		}
		if err == nil && want != cty.NilType {
			v, err = convertTo(v, want)
		}
		if err != nil {
			return nil, pathErr(path, "literal %s: %v", l.Value, err)
		}
		return &hcldec.LiteralSpec{Value: v}, nil
	}
}

func (o *ObjectSpec) convert(path string) (hcldec.Spec, error) {
	out := make(hcldec.ObjectSpec, len(o.Attributes))
	owner := map[string]string{} // HCL name -> object key that claimed it
	for _, key := range sortedKeys(o.Attributes) {
		child := o.Attributes[key]
		if key == "" {
			return nil, pathErr(path, "object has an empty key")
		}
		sub, err := child.convert(join(path, key), cty.NilType)
		if err != nil {
			return nil, err
		}
		for _, name := range child.hclNames() {
			if prev, dup := owner[name]; dup {
				return nil, pathErr(path, "name %q is used by both %q and %q; each attribute or block name may appear once in a body", name, prev, key)
			}
			owner[name] = key
		}
		out[key] = sub
	}
	return out, nil
}

// hclNames are the attribute and block names s claims in its body.
func (s *Spec) hclNames() []string {
	switch {
	case s == nil:
		return nil
	case s.Attr != nil:
		return []string{s.Attr.Name}
	case s.Block != nil:
		return []string{s.Block.Name}
	case s.BlockList != nil:
		return []string{s.BlockList.Name}
	case s.BlockMap != nil:
		return []string{s.BlockMap.Name}
	case s.Default != nil:
		return append(s.Default.Primary.hclNames(), s.Default.Default.hclNames()...)
	case s.Object != nil:
		// A nested Object decodes the same body, so its names count too.
		var names []string
		for _, k := range sortedKeys(s.Object.Attributes) {
			names = append(names, s.Object.Attributes[k].hclNames()...)
		}
		return names
	}
	return nil
}

func (s *Spec) variants() int {
	n := 0
	for _, set := range []bool{s.Object != nil, s.Attr != nil, s.Block != nil, s.BlockList != nil, s.BlockMap != nil, s.Default != nil, s.Literal != nil} {
		if set {
			n++
		}
	}
	return n
}

// literalValue decodes JSON text into the value of its implied type.
func literalValue(raw json.RawMessage) (cty.Value, error) {
	if !json.Valid(raw) {
		return cty.NilVal, fmt.Errorf("is not valid JSON (strings need quotes: Literal(`\"text\"`))")
	}
	ty, err := ctyjson.ImpliedType(raw)
	if err != nil {
		return cty.NilVal, err
	}
	return ctyjson.Unmarshal(raw, ty)
}

func convertTo(v cty.Value, want cty.Type) (cty.Value, error) {
	cv, err := convert.Convert(v, want)
	if err != nil {
		return cty.NilVal, fmt.Errorf("does not fit type %s: %v", typeexpr.TypeString(want), err)
	}
	return cv, nil
}

// parseType parses an HCL type expression such as "list(string)".
func parseType(expr string) (cty.Type, error) {
	if strings.TrimSpace(expr) == "" {
		return cty.NilType, fmt.Errorf("missing type expression (e.g. \"string\", \"number\", \"list(string)\")")
	}
	x, diags := hclsyntax.ParseExpression([]byte(expr), "type", hcl.InitialPos)
	if diags.HasErrors() {
		return cty.NilType, fmt.Errorf("bad type expression %q: %s", expr, diagsText(diags))
	}
	ty, diags := typeexpr.TypeConstraint(x)
	if diags.HasErrors() {
		return cty.NilType, fmt.Errorf("bad type expression %q: %s", expr, diagsText(diags))
	}
	return ty, nil
}

func diagsText(diags hcl.Diagnostics) string {
	var parts []string
	for _, d := range diags {
		if d.Detail != "" {
			parts = append(parts, d.Detail)
		} else {
			parts = append(parts, d.Summary)
		}
	}
	return strings.Join(parts, "; ")
}

func checkName(path, kind, name string) error {
	if !hclsyntax.ValidIdentifier(name) {
		return pathErr(path, "%s name %q is not a valid HCL identifier", kind, name)
	}
	return nil
}

func pathErr(path, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if path == "" {
		return fmt.Errorf("schema: %s", msg)
	}
	return fmt.Errorf("schema: at %s: %s", path, msg)
}

func join(path, elem string) string {
	if path == "" {
		return elem
	}
	return path + "." + elem
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
