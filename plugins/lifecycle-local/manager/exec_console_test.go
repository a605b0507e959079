package manager

import (
	"testing"

	"github.com/berth-dev/berth/plugins/lifecycle-local/store"
	"github.com/berth-dev/berth/sdk/isolation"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// An exec with a terminal starts at the caller's size; without a terminal
// a size means nothing and is dropped.
func TestExecProcessConsoleSize(t *testing.T) {
	size := &isolation.ConsoleSize{Width: 99, Height: 21}
	p, err := execProcess(store.Record{}, lifecycle.ExecConfig{Cmd: []string{"stty", "size"}, Tty: true, ConsoleSize: size})
	if err != nil {
		t.Fatal(err)
	}
	if p.ConsoleSize == nil || p.ConsoleSize.Width != 99 || p.ConsoleSize.Height != 21 || !p.Terminal {
		t.Fatalf("process = %+v; want a 99x21 terminal", p)
	}
	p, err = execProcess(store.Record{}, lifecycle.ExecConfig{Cmd: []string{"true"}, ConsoleSize: size})
	if err != nil {
		t.Fatal(err)
	}
	if p.ConsoleSize != nil || p.Terminal {
		t.Fatalf("process without a terminal = %+v", p)
	}
}
