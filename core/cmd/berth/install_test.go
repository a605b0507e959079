package main

import (
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSystemdUnit(t *testing.T) {
	text, path, err := serviceFile("linux", serviceSpec{Berth: "/usr/local/bin/berth", Config: "/etc/berth/config.hcl"})
	if err != nil {
		t.Fatal(err)
	}
	if path != "/etc/systemd/system/berth.service" {
		t.Fatalf("path %s", path)
	}
	for _, want := range []string{
		"\nExecStart=/usr/local/bin/berth --config /etc/berth/config.hcl system start --foreground\n",
		"\nExecStop=/usr/local/bin/berth --config /etc/berth/config.hcl system stop\n",
		"\nKillMode=process\n", // containers outlive a daemon restart
		"\nDelegate=yes\n",
		"\n[Install]\nWantedBy=multi-user.target\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("unit lacks %q:\n%s", want, text)
		}
	}
	// Every line is a section, a comment, blank, or Key=Value.
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") && !strings.HasPrefix(l, "[") && !strings.Contains(l, "=") {
			t.Errorf("not a unit line: %q", l)
		}
	}
	if _, _, err := serviceFile("linux", serviceSpec{Berth: "/opt/my apps/berth", Config: "/c"}); err == nil {
		t.Error("a path with a space was accepted")
	}
	if _, _, err := serviceFile("windows", serviceSpec{}); err == nil || !strings.Contains(err.Error(), "windows") {
		t.Errorf("windows: %v", err)
	}
}

func TestLaunchdPlist(t *testing.T) {
	text, path, err := serviceFile("darwin", serviceSpec{Berth: "/opt/berth & co/bin/berth", Config: "/etc/berth/config.hcl"})
	if err != nil {
		t.Fatal(err)
	}
	if path != "/Library/LaunchDaemons/dev.berth.berthd.plist" {
		t.Fatalf("path %s", path)
	}
	// It is well-formed XML, and its ProgramArguments are the command.
	var plist struct {
		Dict struct {
			Keys    []string `xml:"key"`
			Strings []string `xml:"string"`
			Array   struct {
				Strings []string `xml:"string"`
			} `xml:"array"`
		} `xml:"dict"`
	}
	dec := xml.NewDecoder(strings.NewReader(text))
	dec.Strict = true
	if err := dec.Decode(&plist); err != nil {
		t.Fatalf("plist is not XML: %v\n%s", err, text)
	}
	want := []string{"/opt/berth & co/bin/berth", "--config", "/etc/berth/config.hcl", "system", "start", "--foreground"}
	if strings.Join(plist.Dict.Array.Strings, "|") != strings.Join(want, "|") {
		t.Fatalf("ProgramArguments = %q; want %q", plist.Dict.Array.Strings, want)
	}
	if plist.Dict.Strings[0] != "dev.berth.berthd" || !strings.Contains(text, "<key>RunAtLoad</key>\n  <true/>") {
		t.Fatalf("label or RunAtLoad missing:\n%s", text)
	}
}

func TestSystemInstallWritesTheFile(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.hcl")
	if err := os.WriteFile(cfg, []byte("berth {}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(dir, "berth.service")
	e := &env{t: t, config: cfg}
	out := e.mustBerth("system", "install", "--dest", dest)
	if !strings.Contains(out, "wrote "+dest) {
		t.Fatalf("output %q", out)
	}
	b, err := os.ReadFile(dest)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "--config "+cfg+" system start --foreground") {
		t.Fatalf("installed unit:\n%s", b)
	}
	if printed := e.mustBerth("system", "install", "--print"); printed != string(b) {
		t.Fatalf("--print differs from the installed file:\n%s", printed)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Fatalf("temp files left: %v", entries)
	}
}
