// Package tasklog holds what every isolation supervisor does with a
// container's output: the Docker json-file log (Log, rotated by size) and
// the fan-out of a process's output to attaches (Broadcaster). The sandbox
// supervisor and the VM supervisor share it, so `berth logs` reads one
// format whichever mode ran the container.
package tasklog

import "strconv"

// Annotations on a task spec that bound its container log.
const (
	// AnnotationLogMaxSize is the size in bytes past which the log rotates.
	AnnotationLogMaxSize = "org.berth.log.max-size"
	// AnnotationLogMaxFiles is how many files are kept, rotated ones included.
	AnnotationLogMaxFiles = "org.berth.log.max-files"
)

// Defaults when the annotations are absent or invalid.
const (
	DefaultMaxSize  = 10 << 20
	DefaultMaxFiles = 3
)

// Limits returns the log's rotation bounds from a spec's annotations.
func Limits(annotations map[string]string) (maxSize int64, maxFiles int) {
	maxSize, maxFiles = DefaultMaxSize, DefaultMaxFiles
	if v, err := strconv.ParseInt(annotations[AnnotationLogMaxSize], 10, 64); err == nil && v > 0 {
		maxSize = v
	}
	if v, err := strconv.Atoi(annotations[AnnotationLogMaxFiles]); err == nil && v > 0 {
		maxFiles = v
	}
	return maxSize, maxFiles
}
