package manager

import (
	"context"
	"fmt"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/berth-dev/berth/sdk/lifecycle"
	"github.com/berth-dev/berth/sdk/plugin"
)

// BenchmarkLifeOverFakes measures the manager's own cost of one
// container's life (create, start, exit, remove) over instant fakes: the
// store's synced writes and the bookkeeping, without any real layer.
func BenchmarkLifeOverFakes(b *testing.B) {
	l := newFakeLayers()
	m := NewWithLayers(hclog.NewNullLogger(), l)
	if err := m.Configure(context.Background(), plugin.ConfigureRequest{StateDir: b.TempDir()}); err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	ctx := context.Background()
	cfg := lifecycle.Config{Image: "alpine", Cmd: []string{"exit", "0"}}
	b.ResetTimer()
	for i := range b.N {
		c, err := m.Create(ctx, fmt.Sprintf("b%d", i), cfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := m.Start(ctx, c.ID); err != nil {
			b.Fatal(err)
		}
		if _, err := m.Wait(ctx, c.ID); err != nil {
			b.Fatal(err)
		}
		if err := m.Delete(ctx, c.ID, false); err != nil {
			b.Fatal(err)
		}
	}
}
