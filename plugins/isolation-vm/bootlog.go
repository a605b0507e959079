package main

import (
	"path/filepath"

	"github.com/berth-dev/berth/sdk/isolation"
)

// consolePath is where the guest's serial console is appended: the file
// the spec's isolation.AnnotationBootLog names (the lifecycle layer's, read
// by berth logs --boot) when it is an absolute path, else boot.log in the
// task dir.
func (s *supervisor) consolePath() string {
	if p := s.spec.Annotations[isolation.AnnotationBootLog]; p != "" && filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(s.dir, bootLog)
}
