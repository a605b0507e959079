package schema

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hcldec"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

func sample() *Spec {
	return Object(map[string]*Spec{
		"root":     Default(Attr("root", "string", false), Literal(`"/var/lib/x"`)),
		"max_pids": Attr("max_pids", "number", false),
		"timeout":  Default(Attr("timeout_s", "number", false), Literal(` "30" `)),
		"tags":     Default(Attr("tags", "list(string)", false), Literal(`[]`)),
		"labels":   Attr("labels", "map(string)", false),
		"debug":    Default(Attr("debug", "bool", false), Literal(`false`)),
		"kernel": Block("kernel", true, Object(map[string]*Spec{
			"path": Attr("path", "string", true),
			"args": Attr("args", "list(string)", false),
		})),
		"disk": BlockList("disk", Object(map[string]*Spec{
			"size": Attr("size", "number", true),
		}), 0, 4),
		"net": BlockMap("network", []string{"name"}, Object(map[string]*Spec{
			"cidr": Attr("cidr", "string", true),
		})),
		"const": TypedLiteral(`[]`, "set(number)"),
	})
}

func TestSpecJSONRoundTrip(t *testing.T) {
	for name, s := range map[string]*Spec{
		"sample": sample(),
		"empty":  Empty(),
		"object": Object(map[string]*Spec{"o": Attr("o", "object({a=string,b=list(number)})", true)}),
	} {
		t.Run(name, func(t *testing.T) {
			b1, err := json.Marshal(s)
			if err != nil {
				t.Fatal(err)
			}
			var back Spec
			if err := json.Unmarshal(b1, &back); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s, &back) {
				t.Fatalf("round trip changed the spec:\n%s", b1)
			}
			b2, _ := json.Marshal(&back)
			if string(b1) != string(b2) {
				t.Fatalf("re-encoding differs:\n%s\n%s", b1, b2)
			}
		})
	}
}

func TestLiteralIsCompacted(t *testing.T) {
	if got := string(Literal(` { "a" : 1 } `).Literal.Value); got != `{"a":1}` {
		t.Fatalf("got %s", got)
	}
}

func TestHCLDecConversion(t *testing.T) {
	spec, err := Object(map[string]*Spec{
		"root":  Default(Attr("root", "string", false), Literal(`"/x"`)),
		"n":     Default(Attr("n", "number", false), Literal(`"7"`)),
		"names": Attr("names", "map(number)", true),
		"k":     Block("kernel", false, Object(map[string]*Spec{"p": Attr("path", "string", false)})),
		"d":     BlockList("disk", Empty(), 1, 2),
		"m":     BlockMap("net", []string{"name"}, Empty()),
	}).HCLDec()
	if err != nil {
		t.Fatal(err)
	}
	obj := spec.(hcldec.ObjectSpec)
	if a := obj["names"].(*hcldec.AttrSpec); a.Name != "names" || !a.Type.Equals(cty.Map(cty.Number)) || !a.Required {
		t.Errorf("names: %#v", a)
	}
	def := obj["n"].(*hcldec.DefaultSpec)
	if v := def.Default.(*hcldec.LiteralSpec).Value; !v.RawEquals(cty.NumberIntVal(7)) {
		t.Errorf("default literal not converted to number: %#v", v)
	}
	if b := obj["k"].(*hcldec.BlockSpec); b.TypeName != "kernel" || b.Required {
		t.Errorf("block: %#v", b)
	}
	if b := obj["d"].(*hcldec.BlockListSpec); b.MinItems != 1 || b.MaxItems != 2 {
		t.Errorf("block list: %#v", b)
	}
	if b := obj["m"].(*hcldec.BlockMapSpec); b.TypeName != "net" || !reflect.DeepEqual(b.LabelNames, []string{"name"}) {
		t.Errorf("block map: %#v", b)
	}
}

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name string
		spec *Spec
		want string
	}{
		{"nil root", nil, "root of a plugin schema must be an Object"},
		{"attr root", Attr("a", "string", false), "root of a plugin schema must be an Object"},
		{"bad type", Object(map[string]*Spec{"a": Attr("a", "strng", false)}), `at a: attr "a": bad type expression "strng"`},
		{"bad type syntax", Object(map[string]*Spec{"a": Attr("a", "list(", false)}), `bad type expression "list("`},
		{"no type", Object(map[string]*Spec{"a": Attr("a", "", false)}), `missing type expression`},
		{"literal type", Object(map[string]*Spec{"a": Default(Attr("a", "number", false), Literal(`"ten"`))}), `at a.default: literal "ten": does not fit type number`},
		{"literal json", Object(map[string]*Spec{"a": Default(Attr("a", "string", false), Literal(`/x`))}), `is not valid JSON`},
		{"literal list", Object(map[string]*Spec{"a": Default(Attr("a", "list(bool)", false), Literal(`["x"]`))}), `does not fit type list(bool)`},
		{"dup attr", Object(map[string]*Spec{"a": Attr("x", "string", false), "b": Attr("x", "number", false)}), `name "x" is used by both "a" and "b"`},
		{"dup block", Object(map[string]*Spec{"a": Attr("x", "string", false), "b": Block("x", false, Empty())}), `name "x" is used by both`},
		{"dup nested", Object(map[string]*Spec{"k": Block("k", false, Object(map[string]*Spec{"a": Attr("p", "string", false), "b": Default(Attr("p", "string", false), Literal(`""`))}))}), `at k.nested: name "p" is used by both "a" and "b"`},
		{"bad name", Object(map[string]*Spec{"a": Attr("max-pids!", "number", false)}), `not a valid HCL identifier`},
		{"two variants", Object(map[string]*Spec{"a": {Attr: &AttrSpec{Name: "a", Type: "string"}, Literal: &LiteralSpec{Value: []byte(`1`)}}}), "exactly one of"},
		{"no variant", Object(map[string]*Spec{"a": {}}), "found 0"},
		{"nil child", Object(map[string]*Spec{"a": nil}), "at a: spec is nil"},
		{"nil nested", Object(map[string]*Spec{"k": Block("k", false, nil)}), "at k.nested: spec is nil"},
		{"bounds", Object(map[string]*Spec{"d": BlockList("d", Empty(), 3, 2)}), "bad bounds"},
		{"labels", Object(map[string]*Spec{"d": BlockMap("d", nil, Empty())}), "at least one label"},
		{"required default", Object(map[string]*Spec{"a": Default(Attr("a", "string", true), Literal(`"x"`))}), "is required, so its default can never apply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
		})
	}
	if err := sample().Validate(); err != nil {
		t.Fatalf("sample: %v", err)
	}
}

type sampleSettings struct {
	Root    string            `json:"root"`
	MaxPids *int              `json:"max_pids"`
	Timeout float64           `json:"timeout"`
	Tags    []string          `json:"tags"`
	Labels  map[string]string `json:"labels"`
	Debug   bool              `json:"debug"`
	Kernel  struct {
		Path string   `json:"path"`
		Args []string `json:"args"`
	} `json:"kernel"`
	Disk []struct {
		Size int64 `json:"size"`
	} `json:"disk"`
	Net map[string]struct {
		CIDR string `json:"cidr"`
	} `json:"net"`
	Const []int `json:"const"`
}

func decodeHCL(t *testing.T, spec *Spec, src string) (Config, hcl.Diagnostics) {
	t.Helper()
	f, diags := hclsyntax.ParseConfig([]byte(src), "t.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	ds, err := spec.HCLDec()
	if err != nil {
		t.Fatal(err)
	}
	val, diags := hcldec.Decode(f.Body, ds, nil)
	if diags.HasErrors() {
		return Config{}, diags
	}
	c, err := NewConfig(val)
	if err != nil {
		t.Fatal(err)
	}
	return c, nil
}

func TestDecodeSampleBodyWithDefaults(t *testing.T) {
	c, diags := decodeHCL(t, sample(), `
labels = { a = "b" }
timeout_s = 5
kernel {
  path = "/boot/vmlinuz"
}
disk { size = 1024 }
disk { size = 2048 }
network "lan" { cidr = "10.0.0.0/24" }
`)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	var s sampleSettings
	if err := c.Decode(&s); err != nil {
		t.Fatal(err)
	}
	if s.Root != "/var/lib/x" || s.MaxPids != nil || s.Timeout != 5 || len(s.Tags) != 0 || s.Debug {
		t.Errorf("defaults: %+v", s)
	}
	if s.Labels["a"] != "b" || s.Kernel.Path != "/boot/vmlinuz" || s.Kernel.Args != nil {
		t.Errorf("values: %+v", s)
	}
	if len(s.Disk) != 2 || s.Disk[1].Size != 2048 || s.Net["lan"].CIDR != "10.0.0.0/24" {
		t.Errorf("blocks: %+v", s)
	}
}

func TestDecodeErrors(t *testing.T) {
	_, diags := decodeHCL(t, sample(), "kernel {}\nbogus = 1\n")
	var msgs []string
	for _, d := range diags {
		msgs = append(msgs, d.Summary+": "+d.Detail)
	}
	got := strings.Join(msgs, "\n")
	for _, want := range []string{`Missing required argument`, `"path" is required`, `An argument named "bogus" is not expected here`} {
		if !strings.Contains(got, want) {
			t.Errorf("diagnostics %q lack %q", got, want)
		}
	}

	var s struct {
		Root string `json:"root"`
	}
	err := Config{JSON: []byte(`{"root":"/x","extra":1}`)}.Decode(&s)
	if err == nil || !strings.Contains(err.Error(), `unknown field "extra"`) {
		t.Fatalf("unknown field: %v", err)
	}
	s.Root = ""
	if err := (Config{}).Decode(&s); err != nil || s.Root != "" {
		t.Fatalf("empty config: %v %+v", err, s)
	}
	if err := (Config{JSON: []byte(`{"root":"/x"} {}`)}).Decode(&s); err == nil {
		t.Fatal("trailing data accepted")
	}
}

func TestEmptySchemaRejectsSettings(t *testing.T) {
	c, diags := decodeHCL(t, Empty(), "")
	if diags.HasErrors() || string(c.JSON) != "{}" {
		t.Fatalf("%s %v", c.JSON, diags)
	}
	if _, diags := decodeHCL(t, Empty(), "x = 1"); !diags.HasErrors() {
		t.Fatal("empty schema accepted an attribute")
	}
}
