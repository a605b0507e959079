package manager

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// The task spec names <logs>/<id>.boot.log (beside the output log, where the
// api plugin's Logs(boot) reads it) in isolation.AnnotationBootLog, and
// Delete removes that file with the container.
func TestBootLogAnnotationAndRemoval(t *testing.T) {
	l := newFakeLayers()
	m := newTestManager(t, l, t.TempDir())
	ctx := context.Background()
	c, err := m.Create(ctx, "web", lifecycle.Config{Image: "alpine", OpenStdin: true})
	if err != nil {
		t.Fatal(err)
	}
	task := l.iso.tasks[c.ID].info.Spec
	want := filepath.Join(filepath.Dir(task.LogPath), c.ID+".boot.log")
	if got := task.Annotations[isolation.AnnotationBootLog]; got != want {
		t.Fatalf("%s = %q, want %q", isolation.AnnotationBootLog, got, want)
	}
	if task.Annotations[isolation.AnnotationOpenStdin] != "open" {
		t.Errorf("the boot-log annotation replaced the open-stdin one: %v", task.Annotations)
	}
	// What a VM mode would write.
	if err := os.WriteFile(want, []byte("console\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, "web", true); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(want); !os.IsNotExist(err) {
		t.Errorf("the boot log outlived its container: %v", err)
	}
}
