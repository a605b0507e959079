package schema

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"

	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"
)

// Config is a plugin's decoded settings as the core sends them: JSON is the
// object that the plugin's schema produced from its block of config.hcl
// (every key of the root Object present, unset ones as null). A Config is a
// value; it is safe to copy and to decode more than once.
type Config struct {
	JSON []byte
}

// NewConfig encodes a value decoded with [Spec.HCLDec] (core side). The
// value must be wholly known.
func NewConfig(val cty.Value) (Config, error) {
	if !val.IsWhollyKnown() {
		return Config{}, fmt.Errorf("schema: config value is not fully known")
	}
	b, err := ctyjson.Marshal(val, val.Type())
	if err != nil {
		return Config{}, fmt.Errorf("schema: encode config: %w", err)
	}
	return Config{JSON: b}, nil
}

// Decode unmarshals the settings into out (a pointer to the plugin's struct,
// with json tags matching the keys of its schema's root Object). A key with
// no matching field is an error, since it means the schema and the struct
// disagree. An empty Config decodes as {}.
func (c Config) Decode(out any) error {
	data := c.JSON
	if len(bytes.TrimSpace(data)) == 0 {
		data = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("schema: decode plugin config into %T (do the schema's keys match the struct's json tags?): %w", out, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("schema: decode plugin config into %T: trailing data after the JSON object", out)
	}
	return nil
}
