package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/images"
)

func TestProgressPlainLines(t *testing.T) {
	var buf bytes.Buffer
	p := &progressPrinter{out: &buf, blobs: map[string]*blobProgress{}}
	id := "sha256:0123456789abcdef0123"
	p.update(images.Progress{ID: "docker.io/library/alpine:latest", Phase: images.PhaseResolving})
	p.update(images.Progress{ID: id, Phase: images.PhaseWaiting, Total: 4_000_000})
	p.update(images.Progress{ID: id, Phase: images.PhaseDownloading, Total: 4_000_000})
	p.blobs[id].started = time.Now().Add(-time.Second) // 1 MB/s below
	p.update(images.Progress{ID: id, Phase: images.PhaseDownloading, Current: 1_000_000, Total: 4_000_000})
	p.update(images.Progress{ID: id, Phase: images.PhaseDone, Current: 4_000_000, Total: 4_000_000})
	p.finish()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{
		"docker.io/library/alpine:latest: resolving",
		"0123456789ab: waiting",
		"0123456789ab: downloading 0 B / 4.0 MB",
		"0123456789ab: done        4.0 MB",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("plain output:\n%s\nwant:\n%s", buf.String(), strings.Join(want, "\n"))
	}
	// The line of a running download carries rate and ETA.
	b := &blobProgress{Progress: images.Progress{ID: id, Phase: images.PhaseDownloading, Current: 1_000_000, Total: 4_000_000}, started: time.Now().Add(-time.Second)}
	if l := b.line(); !strings.Contains(l, "1.0 MB / 4.0 MB") || !strings.Contains(l, "/s") || !strings.Contains(l, "ETA 3s") {
		t.Errorf("download line %q lacks bytes, rate or ETA", l)
	}
	var quiet bytes.Buffer
	q := &progressPrinter{out: &quiet, quiet: true, blobs: map[string]*blobProgress{}}
	q.update(images.Progress{ID: id, Phase: images.PhaseDone})
	q.finish()
	if quiet.Len() != 0 {
		t.Errorf("quiet printed %q", quiet.String())
	}
}

func TestParsePlatform(t *testing.T) {
	if p, err := parsePlatform("linux/arm64/v8"); err != nil || p.String() != "linux/arm64/v8" {
		t.Errorf("linux/arm64/v8 = %v %v", p, err)
	}
	for _, bad := range []string{"linux", "/amd64", "a/b/c/d"} {
		if _, err := parsePlatform(bad); err == nil {
			t.Errorf("parsePlatform(%q) accepted", bad)
		}
	}
}
