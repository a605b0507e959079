package manager

import (
	"context"
	"io"

	"github.com/berth-dev/berth/sdk/errdefs"
	"github.com/berth-dev/berth/sdk/lifecycle"
)

// Contract methods being written (helper H8): they say so until they land.

func (m *Manager) SetRestartPolicy(context.Context, string, lifecycle.RestartPolicy) (lifecycle.Container, error) {
	return lifecycle.Container{}, errdefs.NotImplemented("update --restart: not yet")
}
func (m *Manager) Top(context.Context, string, []string) (lifecycle.TopResult, error) {
	return lifecycle.TopResult{}, errdefs.NotImplemented("top: not yet")
}
func (m *Manager) CopyFrom(context.Context, string, string, io.Writer) error {
	return errdefs.NotImplemented("cp: not yet")
}
func (m *Manager) CopyTo(context.Context, string, string, io.Reader) error {
	return errdefs.NotImplemented("cp: not yet")
}
func (m *Manager) Export(context.Context, string, io.Writer) error {
	return errdefs.NotImplemented("export: not yet")
}
