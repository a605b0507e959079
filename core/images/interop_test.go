package images

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/sdk/images"
)

// skopeo is the peer tool archives must move to and from (Debian package
// skopeo, installed by scripts/install-deps.sh).
func skopeo(t *testing.T, args ...string) string {
	t.Helper()
	path, err := exec.LookPath("skopeo")
	if err != nil {
		t.Fatal("skopeo is missing: run scripts/install-deps.sh (it installs Debian's skopeo)")
	}
	cmd := exec.Command(path, append([]string{"--insecure-policy"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("skopeo %v: %v\n%s", args, err, errb.String())
	}
	return out.String()
}

// TestArchivesMoveToAndFromSkopeo checks both archive formats both ways:
// what skopeo writes, Berth loads; what Berth saves, skopeo reads back as
// the same image.
func TestArchivesMoveToAndFromSkopeo(t *testing.T) {
	reg := newTestRegistry(t)
	img := randomImage(t, 32<<10, 3, "amd64")
	reg.push(t, "interop:1", img)
	want := digestOf(t, img)
	ctx := context.Background()
	dir := t.TempDir()

	for _, tc := range []struct{ transport, format string }{
		{"oci-archive", images.FormatOCI},
		{"docker-archive", images.FormatDocker},
	} {
		t.Run(tc.transport, func(t *testing.T) {
			// skopeo → Berth.
			archive := filepath.Join(dir, tc.transport+"-from-skopeo.tar")
			skopeo(t, "copy", "-q", "--src-tls-verify=false", "docker://"+reg.ref("interop:1"), tc.transport+":"+archive+":"+reg.ref("interop:1"))
			f, err := os.Open(archive)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			s := newService(t, t.TempDir())
			loaded, err := s.Load(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(loaded) != 1 || loaded[0].Name != reg.ref("interop:1") {
				t.Fatalf("loaded %+v", loaded)
			}
			d, err := s.Inspect(ctx, reg.ref("interop:1"))
			if err != nil || len(d.Layers) != 3 {
				t.Fatalf("inspect: %+v %v", d.Layers, err)
			}
			checkStoreConsistent(t, s)

			// Berth → skopeo: the image skopeo reads has the layers and
			// config of the one pulled.
			s2 := newService(t, t.TempDir())
			if _, err := s2.Pull(ctx, reg.ref("interop:1"), images.PullOptions{}, nil); err != nil {
				t.Fatal(err)
			}
			saved := filepath.Join(dir, tc.transport+"-from-berth.tar")
			out, err := os.Create(saved)
			if err != nil {
				t.Fatal(err)
			}
			if err := s2.Save(ctx, []string{reg.ref("interop:1")}, images.SaveOptions{Format: tc.format}, out); err != nil {
				t.Fatal(err)
			}
			out.Close()
			var info struct {
				Digest string
				Layers []string
			}
			if err := json.Unmarshal([]byte(skopeo(t, "inspect", tc.transport+":"+saved)), &info); err != nil {
				t.Fatal(err)
			}
			// skopeo names an OCI layout's layers by blob digest and a
			// docker-save tarball's by diff ID.
			m, _ := img.Manifest()
			cf, _ := img.ConfigFile()
			wantLayers := []string{}
			for i := range m.Layers {
				if tc.format == images.FormatOCI {
					wantLayers = append(wantLayers, m.Layers[i].Digest.String())
				} else {
					wantLayers = append(wantLayers, cf.RootFS.DiffIDs[i].String())
				}
			}
			if strings.Join(info.Layers, " ") != strings.Join(wantLayers, " ") {
				t.Errorf("skopeo sees layers %v, want %v", info.Layers, wantLayers)
			}
			if tc.format == images.FormatOCI && info.Digest != want {
				t.Errorf("skopeo sees digest %s, want %s", info.Digest, want)
			}
			if !strings.HasPrefix(info.Digest, "sha256:") {
				t.Errorf("skopeo digest %q", info.Digest)
			}
		})
	}
}
