// Package schema is how a plugin declares the settings it accepts in its
// block of config.hcl, and how it receives the decoded values.
//
// A plugin describes its settings as a [Spec], a tree of plain Go values that
// mirrors hcldec (the HCL "schema as data" decoder): [Object], [Attr],
// [Block], [BlockList], [BlockMap], [Default] and [Literal]. The plugin
// returns it from ConfigSchema; it crosses gRPC as JSON (encoding/json, and a
// Spec survives that round trip unchanged). The core converts it with
// [Spec.HCLDec], decodes the plugin's block against it (so a bad value is
// reported at its file:line:col in config.hcl, before the plugin sees it) and
// sends the result back as a [Config]: the JSON of the decoded object.
// The plugin decodes that into its own struct with [Config.Decode]:
//
//	var Spec = schema.Object(map[string]*schema.Spec{
//		"root":     schema.Default(schema.Attr("root", "string", false), schema.Literal(`"/var/lib/x"`)),
//		"max_pids": schema.Attr("max_pids", "number", false),
//	})
//
//	type settings struct {
//		Root    string `json:"root"`
//		MaxPids *int   `json:"max_pids"` // null when unset
//	}
//
//	func (p *plugin) Configure(c schema.Config) error {
//		var s settings
//		return c.Decode(&s)
//	}
//
// Contracts:
//   - The root of a plugin's schema is an Object (use [Empty] for none);
//     the keys of an Object are the keys of the decoded JSON object, while
//     the names inside Attr and Block are what the user writes in HCL.
//   - Attribute types are HCL type expressions: "string", "number", "bool",
//     "any", "list(string)", "set(number)", "map(string)",
//     "object({size=number,path=string})", "tuple([string,number])".
//   - An attribute that is unset and has no default decodes to JSON null;
//     use a pointer field when the plugin must tell "unset" from zero.
//   - A Literal holds its value as JSON text and is converted to the type
//     the surrounding spec expects (the primary of a Default), so
//     Literal(`"10"`) is a valid default for a "number" attribute but
//     Literal(`"ten"`) is reported by [Spec.Validate].
//
// Authors never handle cty values; the core does, through [Spec.HCLDec] and
// [NewConfig].
package schema

import (
	"bytes"
	"encoding/json"
)

// Spec is one node of a plugin's settings schema. It is a tagged union:
// exactly one field is set. Build it with the functions of this package
// rather than by hand.
type Spec struct {
	Object    *ObjectSpec    `json:"object,omitempty"`
	Attr      *AttrSpec      `json:"attr,omitempty"`
	Block     *BlockSpec     `json:"block,omitempty"`
	BlockList *BlockListSpec `json:"block_list,omitempty"`
	BlockMap  *BlockMapSpec  `json:"block_map,omitempty"`
	Default   *DefaultSpec   `json:"default,omitempty"`
	Literal   *LiteralSpec   `json:"literal,omitempty"`
}

// ObjectSpec decodes a body into an object whose keys are the map keys and
// whose values are decoded by the corresponding specs.
type ObjectSpec struct {
	Attributes map[string]*Spec `json:"attributes"`
}

// AttrSpec decodes the attribute Name, converted to Type (an HCL type
// expression). A missing optional attribute decodes to null.
type AttrSpec struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Required bool   `json:"required,omitempty"`
}

// BlockSpec decodes at most one block of type Name (exactly one when
// Required) with Nested. A missing optional block decodes to null.
type BlockSpec struct {
	Name     string `json:"name"`
	Required bool   `json:"required,omitempty"`
	Nested   *Spec  `json:"nested"`
}

// BlockListSpec decodes every block of type Name, in order, into a list.
// MinItems and MaxItems bound the count; zero means no bound.
type BlockListSpec struct {
	Name     string `json:"name"`
	Nested   *Spec  `json:"nested"`
	MinItems int    `json:"min_items,omitempty"`
	MaxItems int    `json:"max_items,omitempty"`
}

// BlockMapSpec decodes blocks of type Name with one label per entry of
// Labels into nested maps keyed by those labels (one map level per label).
// Labels name the labels in error messages.
type BlockMapSpec struct {
	Name   string   `json:"name"`
	Labels []string `json:"labels"`
	Nested *Spec    `json:"nested"`
}

// DefaultSpec decodes Primary and, when that yields null, Default instead.
type DefaultSpec struct {
	Primary *Spec `json:"primary"`
	Default *Spec `json:"default"`
}

// LiteralSpec is a constant. Value is JSON text; Type, when set, is the HCL
// type expression the value is converted to (otherwise the type the
// enclosing spec expects, or the type implied by the JSON).
type LiteralSpec struct {
	Value json.RawMessage `json:"value"`
	Type  string          `json:"type,omitempty"`
}

// Object returns a spec that decodes a body into an object with one key per
// entry of attrs. A nil map is an object with no keys.
func Object(attrs map[string]*Spec) *Spec {
	if attrs == nil {
		attrs = map[string]*Spec{}
	}
	return &Spec{Object: &ObjectSpec{Attributes: attrs}}
}

// Empty is the schema of a plugin that takes no settings: any attribute or
// block in its config.hcl block is an error.
func Empty() *Spec { return Object(nil) }

// Attr returns a spec for the attribute name of the HCL type expression typ.
func Attr(name, typ string, required bool) *Spec {
	return &Spec{Attr: &AttrSpec{Name: name, Type: typ, Required: required}}
}

// Block returns a spec for a single block of type name.
func Block(name string, required bool, nested *Spec) *Spec {
	return &Spec{Block: &BlockSpec{Name: name, Required: required, Nested: nested}}
}

// BlockList returns a spec for a list of blocks of type name; min and max
// bound the count (0 = unbounded).
func BlockList(name string, nested *Spec, min, max int) *Spec {
	return &Spec{BlockList: &BlockListSpec{Name: name, Nested: nested, MinItems: min, MaxItems: max}}
}

// BlockMap returns a spec for labelled blocks of type name, decoded into a
// map keyed by the labels.
func BlockMap(name string, labels []string, nested *Spec) *Spec {
	return &Spec{BlockMap: &BlockMapSpec{Name: name, Labels: labels, Nested: nested}}
}

// Default returns a spec that decodes primary, or def when primary is null.
func Default(primary, def *Spec) *Spec {
	return &Spec{Default: &DefaultSpec{Primary: primary, Default: def}}
}

// Literal returns a constant spec holding the JSON text value (for example
// `"/var/lib/x"`, `10`, `true`, `["a","b"]`). The text is stored compacted
// so that a Spec survives a JSON round trip byte for byte; invalid JSON is
// kept as given and reported by [Spec.Validate].
func Literal(value string) *Spec {
	return &Spec{Literal: &LiteralSpec{Value: compactJSON(value)}}
}

// TypedLiteral is [Literal] with an explicit HCL type expression, for a
// constant whose JSON alone does not say its type (e.g. `[]` as list(string)).
func TypedLiteral(value, typ string) *Spec {
	s := Literal(value)
	s.Literal.Type = typ
	return s
}

func compactJSON(s string) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, []byte(s)); err != nil {
		return json.RawMessage(s)
	}
	return json.RawMessage(buf.Bytes())
}
