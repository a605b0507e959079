package archive

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/berth-dev/berth/sdk/errdefs"
)

// Compression is how a layer blob is compressed.
type Compression string

// Compressions Berth applies.
const (
	Uncompressed Compression = "none"
	Gzip         Compression = "gzip"
	Zstd         Compression = "zstd"
)

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// CompressionOf returns the compression a layer media type names, and false
// when the media type is empty or not a tar layer type Berth knows (then
// Decompress sniffs the stream).
func CompressionOf(mediaType string) (Compression, bool) {
	switch {
	case mediaType == "":
		return "", false
	case strings.HasSuffix(mediaType, "+gzip"), strings.HasSuffix(mediaType, ".tar.gzip"):
		return Gzip, true
	case strings.HasSuffix(mediaType, "+zstd"), strings.HasSuffix(mediaType, ".tar.zstd"):
		return Zstd, true
	case strings.HasSuffix(mediaType, ".tar"), strings.HasSuffix(mediaType, "layer.v1.tar"):
		return Uncompressed, true
	}
	return "", false
}

// Decompress returns the uncompressed tar stream of a layer blob r, using
// mediaType or, when that says nothing, the stream's magic number. Closing
// the result releases the decompressor; it does not close r.
func Decompress(mediaType string, r io.Reader) (io.ReadCloser, error) {
	c, ok := CompressionOf(mediaType)
	if ok && c == Uncompressed {
		return io.NopCloser(r), nil
	}
	br := bufio.NewReaderSize(r, 64<<10)
	if !ok {
		head, err := br.Peek(4)
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read layer header: %w", err)
		}
		switch {
		case bytes.HasPrefix(head, gzipMagic):
			c = Gzip
		case bytes.HasPrefix(head, zstdMagic):
			c = Zstd
		default:
			c = Uncompressed
		}
	}
	switch c {
	case Gzip:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, errdefs.InvalidArgument("layer (%s) is not gzip: %v", mediaTypeOr(mediaType), err)
		}
		return zr, nil
	case Zstd:
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(false))
		if err != nil {
			return nil, errdefs.InvalidArgument("layer (%s) is not zstd: %v", mediaTypeOr(mediaType), err)
		}
		return zstdCloser{zr}, nil
	default:
		return io.NopCloser(br), nil
	}
}

func mediaTypeOr(mt string) string {
	if mt == "" {
		return "no media type"
	}
	return mt
}

type zstdCloser struct{ *zstd.Decoder }

func (z zstdCloser) Close() error { z.Decoder.Close(); return nil }
