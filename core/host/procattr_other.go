//go:build !linux

package host

import "syscall"

// dieWithParent returns no attributes: darwin has no Pdeathsig, so plugins
// served by sdk.Serve watch their parent and exit when it goes away.
func dieWithParent() *syscall.SysProcAttr { return nil }
