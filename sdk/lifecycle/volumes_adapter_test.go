package lifecycle

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// The fake's volume, Top, restart-policy and archive methods: volumes
// answer from a script, archives echo what the test gave.

var testVolume = Volume{
	Name: "data", Driver: VolumeDriverLocal, Mountpoint: "/var/lib/berth/volumes/data/_data",
	Labels: map[string]string{"a": "b"}, CreatedAt: testTime, Anonymous: true, UsedBy: []string{"c0ffee1"},
}

func (f *fake) CreateVolume(_ context.Context, name string, labels map[string]string) (Volume, error) {
	if err := f.record("CreateVolume", name, labels); err != nil {
		return Volume{}, err
	}
	return testVolume, nil
}
func (f *fake) ListVolumes(context.Context) ([]Volume, error) {
	if err := f.record("ListVolumes"); err != nil {
		return nil, err
	}
	return []Volume{testVolume, {Name: "other", Driver: VolumeDriverLocal}}, nil
}
func (f *fake) InspectVolume(_ context.Context, name string) (Volume, error) {
	if err := f.record("InspectVolume", name); err != nil {
		return Volume{}, err
	}
	if name != testVolume.Name {
		return Volume{}, errdefs.NotFound("no such volume: %s", name)
	}
	return testVolume, nil
}
func (f *fake) RemoveVolume(_ context.Context, name string, force bool) error {
	return f.record("RemoveVolume", name, force)
}
func (f *fake) PruneVolumes(_ context.Context, all bool) (VolumePruneReport, error) {
	if err := f.record("PruneVolumes", all); err != nil {
		return VolumePruneReport{}, err
	}
	return VolumePruneReport{Removed: []string{"x", "y"}, ReclaimedBytes: 4096}, nil
}
func (f *fake) SetRestartPolicy(_ context.Context, ref string, p RestartPolicy) (Container, error) {
	c, err := f.container("SetRestartPolicy", ref, StateRunning, p)
	c.Config.Restart = p
	return c, err
}
func (f *fake) Top(_ context.Context, ref string, psArgs []string) (TopResult, error) {
	if err := f.record("Top", ref, psArgs); err != nil {
		return TopResult{}, err
	}
	return TopResult{Titles: []string{"PID", "CMD"}, Processes: [][]string{{"1", "sleep 1"}, {"7", "sh"}}}, nil
}

// archiveOf is what the fake's CopyFrom and Export send: big enough to
// take several chunks.
var archiveOf = func(ref, path string) []byte {
	return bytes.Repeat([]byte(ref+":"+path+";"), 3*ArchiveChunkSize/8)
}

func (f *fake) CopyFrom(_ context.Context, ref, path string, w io.Writer) error {
	if err := f.record("CopyFrom", ref, path); err != nil {
		return err
	}
	_, err := w.Write(archiveOf(ref, path))
	return err
}
func (f *fake) Export(_ context.Context, ref string, w io.Writer) error {
	if err := f.record("Export", ref); err != nil {
		return err
	}
	_, err := w.Write(archiveOf(ref, "/"))
	return err
}

// copied keeps what CopyTo received.
var copied bytes.Buffer

func (f *fake) CopyTo(_ context.Context, ref, dir string, r io.Reader) error {
	if err := f.record("CopyTo", ref, dir); err != nil {
		return err
	}
	if dir == "/refuse" { // reads a little, then refuses
		_, _ = r.Read(make([]byte, 10))
		return errdefs.InvalidArgument("entry %q would leave the container", "../x")
	}
	copied.Reset()
	_, err := io.Copy(&copied, r)
	return err
}

func volumeEqual(a, b Volume) bool {
	if !a.CreatedAt.Equal(b.CreatedAt) {
		return false
	}
	a.CreatedAt, b.CreatedAt = time.Time{}, time.Time{}
	return reflect.DeepEqual(a, b)
}

func TestVolumesRoundTrip(t *testing.T) {
	f := &fake{}
	c := dial(t, f)
	ctx := context.Background()
	v, err := c.CreateVolume(ctx, "", map[string]string{"k": "v"})
	if err != nil || !volumeEqual(v, testVolume) {
		t.Errorf("CreateVolume = %+v, %v; want %+v", v, err, testVolume)
	}
	vs, err := c.ListVolumes(ctx)
	if err != nil || len(vs) != 2 || !volumeEqual(vs[0], testVolume) || vs[1].Name != "other" {
		t.Errorf("ListVolumes = %+v, %v", vs, err)
	}
	if _, err := c.InspectVolume(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("InspectVolume of a missing volume: %v, want NotFound", err)
	}
	if err := c.RemoveVolume(ctx, "data", true); err != nil {
		t.Errorf("RemoveVolume: %v", err)
	}
	rep, err := c.PruneVolumes(ctx, true)
	if err != nil || !reflect.DeepEqual(rep, VolumePruneReport{Removed: []string{"x", "y"}, ReclaimedBytes: 4096}) {
		t.Errorf("PruneVolumes = %+v, %v", rep, err)
	}
	p := RestartPolicy{Name: "on-failure", MaxRetries: 3}
	ct, err := c.SetRestartPolicy(ctx, "web", p)
	if err != nil || ct.Config.Restart != p {
		t.Errorf("SetRestartPolicy = %+v, %v", ct.Config.Restart, err)
	}
	top, err := c.Top(ctx, "web", []string{"-o", "pid"})
	if err != nil || !reflect.DeepEqual(top, TopResult{Titles: []string{"PID", "CMD"}, Processes: [][]string{{"1", "sleep 1"}, {"7", "sh"}}}) {
		t.Errorf("Top = %+v, %v", top, err)
	}
	want := []string{
		"CreateVolume[ map[k:v]]", "ListVolumes[]", "InspectVolume[nope]", "RemoveVolume[data true]",
		"PruneVolumes[true]", "SetRestartPolicy[web {on-failure 3}]", "Top[web [-o pid]]",
	}
	if !reflect.DeepEqual(f.calls, want) {
		t.Errorf("plugin calls\n %q\nwant\n %q", f.calls, want)
	}
	f.err = errdefs.InvalidState("volume data is in use by container web")
	if err := c.RemoveVolume(ctx, "data", false); !errdefs.IsInvalidState(err) || !strings.Contains(err.Error(), "in use by container web") {
		t.Errorf("RemoveVolume error = %v, want the plugin's InvalidState", err)
	}
}

func TestArchivesRoundTrip(t *testing.T) {
	f := &fake{}
	c := dial(t, f)
	ctx := context.Background()
	var out bytes.Buffer
	if err := c.CopyFrom(ctx, "web", "/etc", &out); err != nil || !bytes.Equal(out.Bytes(), archiveOf("web", "/etc")) {
		t.Errorf("CopyFrom: %v; got %d bytes, want %d", err, out.Len(), len(archiveOf("web", "/etc")))
	}
	out.Reset()
	if err := c.Export(ctx, "web", &out); err != nil || !bytes.Equal(out.Bytes(), archiveOf("web", "/")) {
		t.Errorf("Export: %v; got %d bytes", err, out.Len())
	}
	// A real tar, several chunks long.
	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	body := bytes.Repeat([]byte("x"), 2*ArchiveChunkSize+5)
	_ = tw.WriteHeader(&tar.Header{Name: "f", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	_, _ = tw.Write(body)
	_ = tw.Close()
	if err := c.CopyTo(ctx, "web", "/tmp", bytes.NewReader(in.Bytes())); err != nil || !bytes.Equal(copied.Bytes(), in.Bytes()) {
		t.Errorf("CopyTo: %v; plugin got %d bytes, want %d", err, copied.Len(), in.Len())
	}
	// A refusal before the whole archive was sent is the plugin's error.
	big := bytes.Repeat([]byte("y"), 16*ArchiveChunkSize)
	if err := c.CopyTo(ctx, "web", "/refuse", bytes.NewReader(big)); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "would leave the container") {
		t.Errorf("CopyTo refused: %v, want the plugin's InvalidArgument", err)
	}
	f.err = errdefs.NotFound("no such file in web: /nope")
	if err := c.CopyFrom(ctx, "web", "/nope", io.Discard); !errdefs.IsNotFound(err) {
		t.Errorf("CopyFrom of a missing path: %v, want NotFound", err)
	}
}
