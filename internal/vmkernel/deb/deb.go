// Package deb reads Debian binary packages (.deb) without dpkg: the ar
// archive, the control fields and a streaming walk over the data tarball.
//
// It exists so that Berth can take a kernel out of Debian's packages on any OS
// (Linux with or without apt, macOS) with one code path. It never writes to
// disk: callers pick the entries they want from the walk. Every name a walk
// reports is clean and relative; archives with names climbing out ("..",
// absolute paths), device nodes, FIFOs, or malformed headers are refused with
// an error naming the member and entry.
package deb

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/therootcompany/xz"
)

// Control holds the fields of a package's control file that Berth uses.
// Fields keeps every field by its canonical name (e.g. "Depends").
type Control struct {
	Package      string
	Version      string
	Architecture string
	Depends      string
	Fields       map[string]string
}

// Entry is one entry of the data tarball.
type Entry struct {
	// Name is relative to the package root, cleaned, without "./" or a
	// leading slash ("boot/vmlinuz-6.1.0-56-amd64"). Directories have no
	// trailing slash.
	Name string
	// Type is tar.TypeReg, tar.TypeDir, tar.TypeSymlink or tar.TypeLink.
	Type byte
	Mode int64
	Size int64
	// Linkname is the target of a symlink (as stored, possibly absolute) or
	// of a hard link (cleaned and relative like Name).
	Linkname string
}

// DataFunc receives each data entry in archive order. For a regular file r
// yields its content (it need not be read to the end); otherwise r is empty.
// Returning ErrStop ends the walk early without error.
type DataFunc func(e Entry, r io.Reader) error

// ErrStop may be returned by a DataFunc to end a walk early.
var ErrStop = errors.New("deb: stop walk")

const (
	arMagic     = "!<arch>\n"
	arHeaderLen = 60
)

// Read parses the .deb read from r: it checks debian-binary, parses the
// control file, and, when data is not nil, streams the data tarball's entries
// to data. It returns the control fields. r is read once, sequentially.
func Read(r io.Reader, data DataFunc) (*Control, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	magic := make([]byte, len(arMagic))
	if _, err := io.ReadFull(br, magic); err != nil {
		return nil, fmt.Errorf("not a .deb: reading ar magic: %w", truncated(err))
	}
	if string(magic) != arMagic {
		return nil, fmt.Errorf("not a .deb: bad ar magic %q", magic)
	}
	var ctrl *Control
	index := 0
	for {
		name, size, err := readARHeader(br)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("ar member %d: %w", index, err)
		}
		body := &countingReader{r: io.LimitReader(br, size)}
		switch {
		case index == 0:
			if name != "debian-binary" {
				return nil, fmt.Errorf("not a .deb: first member is %q, want debian-binary", name)
			}
			v, err := io.ReadAll(io.LimitReader(body, 64))
			if err != nil {
				return nil, fmt.Errorf("debian-binary: %w", truncated(err))
			}
			if !strings.HasPrefix(string(v), "2.") {
				return nil, fmt.Errorf("debian-binary: unsupported format version %q", strings.TrimSpace(string(v)))
			}
		case strings.HasPrefix(name, "control.tar"):
			if ctrl != nil {
				return nil, fmt.Errorf("ar member %q: second control archive", name)
			}
			c, err := readControl(name, body)
			if err != nil {
				return nil, err
			}
			ctrl = c
		case strings.HasPrefix(name, "data.tar"):
			if ctrl == nil {
				return nil, fmt.Errorf("ar member %q: data archive before the control archive", name)
			}
			if data == nil {
				return ctrl, nil
			}
			if err := walkData(name, body, data); err != nil {
				if errors.Is(err, ErrStop) {
					return ctrl, nil
				}
				return nil, err
			}
			if _, err := io.Copy(io.Discard, body); err != nil {
				return nil, fmt.Errorf("ar member %q: %w", name, err)
			}
			if body.n != size {
				return nil, fmt.Errorf("ar member %q: truncated: %d of %d bytes", name, body.n, size)
			}
			return ctrl, nil
		case strings.HasPrefix(name, "_"):
			// deb(5): members starting with "_" (signatures) may be skipped.
		default:
			return nil, fmt.Errorf("ar member %q: unexpected member in a .deb", name)
		}
		// Skip the rest of the member and its padding byte.
		if _, err := io.Copy(io.Discard, body); err != nil {
			return nil, fmt.Errorf("ar member %q: %w", name, err)
		}
		if body.n != size {
			return nil, fmt.Errorf("ar member %q: truncated: %d of %d bytes", name, body.n, size)
		}
		if size%2 == 1 {
			if _, err := br.ReadByte(); err != nil && err != io.EOF {
				return nil, fmt.Errorf("ar member %q: padding: %w", name, err)
			}
		}
		index++
	}
	if ctrl == nil {
		return nil, errors.New("not a .deb: no control archive")
	}
	if data != nil {
		return nil, errors.New("not a .deb: no data archive")
	}
	return ctrl, nil
}

// readARHeader reads one 60-byte common ar header. It returns io.EOF only
// at a clean end of the archive.
func readARHeader(br *bufio.Reader) (string, int64, error) {
	var h [arHeaderLen]byte
	n, err := io.ReadFull(br, h[:])
	if n == 0 && err == io.EOF {
		return "", 0, io.EOF
	}
	if err != nil {
		return "", 0, fmt.Errorf("header: %w", truncated(err))
	}
	if string(h[58:60]) != "`\n" {
		return "", 0, fmt.Errorf("bad header terminator %q", h[58:60])
	}
	name := strings.TrimRight(string(h[0:16]), " ")
	name = strings.TrimSuffix(name, "/") // GNU ar
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return "", 0, fmt.Errorf("bad member name %q", string(h[0:16]))
	}
	sizeField := strings.TrimRight(string(h[48:58]), " ")
	size, err := strconv.ParseInt(sizeField, 10, 64)
	if err != nil || size < 0 {
		return "", 0, fmt.Errorf("member %q: bad size %q", name, sizeField)
	}
	return name, size, nil
}

func readControl(member string, r io.Reader) (*Control, error) {
	var ctrl *Control
	err := walkTar(member, r, func(e Entry, body io.Reader) error {
		if e.Name != "control" || e.Type != tar.TypeReg {
			return nil
		}
		raw, err := io.ReadAll(io.LimitReader(body, 1<<20))
		if err != nil {
			return err
		}
		c, err := ParseControl(raw)
		if err != nil {
			return fmt.Errorf("control: %w", err)
		}
		ctrl = c
		return ErrStop
	})
	if err != nil && !errors.Is(err, ErrStop) {
		return nil, err
	}
	if ctrl == nil {
		return nil, fmt.Errorf("%s: no control file", member)
	}
	return ctrl, nil
}

// ParseControl parses a deb822 control paragraph (the package's "control"
// file). Continuation lines are joined with newlines.
func ParseControl(raw []byte) (*Control, error) {
	fields := map[string]string{}
	var last string
	for i, line := range strings.Split(string(raw), "\n") {
		if strings.TrimSpace(line) == "" {
			if len(fields) > 0 {
				break
			}
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			if last == "" {
				return nil, fmt.Errorf("line %d: continuation without a field", i+1)
			}
			fields[last] += "\n" + strings.TrimSpace(line)
			continue
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok || strings.ContainsAny(k, " \t") || k == "" {
			return nil, fmt.Errorf("line %d: not a field: %q", i+1, line)
		}
		last = k
		fields[k] = strings.TrimSpace(v)
	}
	if fields["Package"] == "" {
		return nil, errors.New("no Package field")
	}
	return &Control{
		Package:      fields["Package"],
		Version:      fields["Version"],
		Architecture: fields["Architecture"],
		Depends:      fields["Depends"],
		Fields:       fields,
	}, nil
}

// decompress returns a reader for a member compressed as its name says.
func decompress(member string, r io.Reader) (io.Reader, func(), error) {
	switch {
	case member == "data.tar" || member == "control.tar":
		return r, func() {}, nil
	case strings.HasSuffix(member, ".tar.xz"):
		xr, err := xz.NewReader(r, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: xz: %w", member, err)
		}
		return xr, func() {}, nil
	case strings.HasSuffix(member, ".tar.zst"):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: zstd: %w", member, err)
		}
		return zr, zr.Close, nil
	case strings.HasSuffix(member, ".tar.gz"):
		gr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: gzip: %w", member, truncated(err))
		}
		return gr, func() { _ = gr.Close() }, nil
	}
	return nil, nil, fmt.Errorf("ar member %q: unsupported compression", member)
}

func walkData(member string, r io.Reader, fn DataFunc) error {
	return walkTar(member, r, fn)
}

func walkTar(member string, r io.Reader, fn DataFunc) error {
	dr, done, err := decompress(member, r)
	if err != nil {
		return err
	}
	defer done()
	tr := tar.NewReader(dr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", member, truncated(err))
		}
		e, err := entryOf(hdr)
		if err != nil {
			return fmt.Errorf("%s: entry %q: %w", member, hdr.Name, err)
		}
		if e.Name == "" { // the root "./" itself
			continue
		}
		var body io.Reader = bytes.NewReader(nil)
		if e.Type == tar.TypeReg {
			body = tr
		}
		if err := fn(e, body); err != nil {
			if errors.Is(err, ErrStop) {
				return err
			}
			return fmt.Errorf("%s: entry %q: %w", member, e.Name, err)
		}
	}
}

// entryOf validates a tar header and turns it into an Entry. The root
// directory ("./") yields an Entry with an empty Name.
func entryOf(hdr *tar.Header) (Entry, error) {
	name, err := CleanName(hdr.Name)
	if err != nil {
		return Entry{}, err
	}
	e := Entry{Name: name, Mode: hdr.Mode, Size: hdr.Size}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA:
		e.Type = tar.TypeReg
	case tar.TypeDir:
		e.Type = tar.TypeDir
		e.Size = 0
	case tar.TypeSymlink:
		e.Type = tar.TypeSymlink
		if hdr.Linkname == "" || strings.ContainsRune(hdr.Linkname, 0) {
			return Entry{}, fmt.Errorf("bad symlink target %q", hdr.Linkname)
		}
		e.Linkname = hdr.Linkname
		e.Size = 0
	case tar.TypeLink:
		e.Type = tar.TypeLink
		target, err := CleanName(hdr.Linkname)
		if err != nil || target == "" {
			return Entry{}, fmt.Errorf("bad hard link target %q", hdr.Linkname)
		}
		e.Linkname = target
		e.Size = 0
	default:
		return Entry{}, fmt.Errorf("unsupported entry type %q (only files, directories and links are accepted)", hdr.Typeflag)
	}
	if e.Name == "" && e.Type != tar.TypeDir {
		return Entry{}, errors.New("the package root is not a directory")
	}
	if e.Size < 0 {
		return Entry{}, fmt.Errorf("negative size %d", e.Size)
	}
	return e, nil
}

// CleanName turns a tar entry name into a clean relative name ("" for the
// root). Names that are absolute, contain ".." elements or NUL bytes are
// refused, even when they would resolve inside the root.
func CleanName(name string) (string, error) {
	if strings.ContainsRune(name, 0) {
		return "", errors.New("name contains NUL")
	}
	n := strings.TrimPrefix(name, "./")
	if n == "." || n == "" {
		return "", nil
	}
	if strings.HasPrefix(n, "/") {
		return "", errors.New("absolute name")
	}
	for _, el := range strings.Split(strings.TrimSuffix(n, "/"), "/") {
		if el == ".." {
			return "", errors.New("name climbs out with \"..\"")
		}
	}
	c := path.Clean(n)
	if c == "." {
		return "", nil
	}
	return c, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// truncated turns the EOFs of a short read into io.ErrUnexpectedEOF so that
// a truncated archive never looks like a clean end.
func truncated(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
