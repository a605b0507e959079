package tasklog

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"
)

// Log appends a container's output to a file as JSON lines in Docker's
// json-file format ({"log":"…","stream":"stdout","time":"…"}), one line per
// line of output, and rotates by size: when the file would pass maxSize it
// is renamed to path.1 (path.1 to path.2, …, keeping maxFiles files in all).
type Log struct {
	mu       sync.Mutex
	path     string
	maxSize  int64
	maxFiles int
	f        *os.File
	size     int64
	// partial holds an unfinished line per stream.
	partial map[string][]byte
	now     func() time.Time
}

// Entry is one line of the log.
type Entry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// OpenLog opens (appending) or creates the log at path; maxSize 0 never
// rotates.
func OpenLog(path string, maxSize int64, maxFiles int) (*Log, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open container log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if maxFiles < 1 {
		maxFiles = 1
	}
	return &Log{path: path, maxSize: maxSize, maxFiles: maxFiles, f: f, size: fi.Size(),
		partial: map[string][]byte{}, now: time.Now}, nil
}

// Write records p, output of stream ("stdout" or "stderr"). Lines longer
// than 16 KiB are split, as Docker does.
func (l *Log) Write(stream string, p []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	buf := append(l.partial[stream], p...)
	const maxLine = 16 << 10
	for {
		i := indexByte(buf, '\n')
		if i < 0 || i >= maxLine {
			if len(buf) >= maxLine {
				if err := l.entry(stream, buf[:maxLine]); err != nil {
					return err
				}
				buf = buf[maxLine:]
				continue
			}
			break
		}
		if err := l.entry(stream, buf[:i+1]); err != nil {
			return err
		}
		buf = buf[i+1:]
	}
	l.partial[stream] = append([]byte(nil), buf...)
	return nil
}

// Flush writes unfinished lines (the process ended without a newline).
func (l *Log) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, stream := range []string{"stdout", "stderr"} {
		if b := l.partial[stream]; len(b) > 0 {
			if err := l.entry(stream, b); err != nil {
				return err
			}
			l.partial[stream] = nil
		}
	}
	return nil
}

// Close flushes unfinished lines and closes the file.
func (l *Log) Close() error {
	err := l.Flush()
	l.mu.Lock()
	defer l.mu.Unlock()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (l *Log) entry(stream string, line []byte) error {
	b, err := json.Marshal(Entry{Log: string(line), Stream: stream, Time: l.now().UTC()})
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if l.maxSize > 0 && l.size > 0 && l.size+int64(len(b)) > l.maxSize {
		if err := l.rotate(); err != nil {
			return err
		}
	}
	n, err := l.f.Write(b)
	l.size += int64(n)
	return err
}

func (l *Log) rotate() error {
	if err := l.f.Close(); err != nil {
		return err
	}
	if l.maxFiles > 1 {
		for i := l.maxFiles - 1; i >= 1; i-- {
			from := l.path
			if i > 1 {
				from = fmt.Sprintf("%s.%d", l.path, i-1)
			}
			if err := os.Rename(from, fmt.Sprintf("%s.%d", l.path, i)); err != nil && !os.IsNotExist(err) {
				return fmt.Errorf("rotate container log: %w", err)
			}
		}
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("rotate container log: %w", err)
	}
	l.f, l.size = f, 0
	return nil
}

func indexByte(b []byte, c byte) int {
	for i, x := range b {
		if x == c {
			return i
		}
	}
	return -1
}
