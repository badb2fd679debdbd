package backup

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// chunkSize is about the largest data file Write makes (uncompressed): a bucket's entries are
// cut into files of about this size, each held in memory until written.
const chunkSize = 4 << 20

// archiveWriter writes the tar+gzip archive: data files, then the manifest.
type archiveWriter struct {
	gz    *gzip.Writer
	tw    *tar.Writer
	mtime time.Time
	files []File
	size  int64 // bytes of data files, uncompressed
}

func newArchiveWriter(w io.Writer, mtime time.Time) *archiveWriter {
	gz := gzip.NewWriter(w)
	gz.Name = "jetfold-backup.tar"
	gz.ModTime = mtime
	return &archiveWriter{gz: gz, tw: tar.NewWriter(gz), mtime: mtime}
}

// add writes the data file name with its contents, holding entries lines.
func (a *archiveWriter) add(name string, data []byte, entries int) error {
	if err := a.write(name, data); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	a.files = append(a.files, File{Name: name, Size: int64(len(data)), Entries: entries, SHA256: hex.EncodeToString(sum[:])})
	a.size += int64(len(data))
	return nil
}

func (a *archiveWriter) write(name string, data []byte) error {
	h := &tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), ModTime: a.mtime, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := a.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write archive: %s: %w", name, err)
	}
	if _, err := a.tw.Write(data); err != nil {
		return fmt.Errorf("write archive: %s: %w", name, err)
	}
	return nil
}

// close writes m, with the files written, as the last file, and ends the archive.
func (a *archiveWriter) close(m *Manifest) error {
	m.Files = a.files
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return fmt.Errorf("write archive: manifest: %w", err)
	}
	if err := a.write(ManifestName, b.Bytes()); err != nil {
		return err
	}
	if err := a.tw.Close(); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	if err := a.gz.Close(); err != nil {
		return fmt.Errorf("write archive: %w", err)
	}
	return nil
}

// fileSet writes the entries of one bucket (or one metadata file) as data files of at most
// about chunkSize: `<prefix><n>.jsonl`, or the one file name when single is set.
type fileSet struct {
	a      *archiveWriter
	prefix string
	single string
	buf    bytes.Buffer
	enc    *json.Encoder
	n      int // entries in buf
	total  int
	names  []string
}

func newFileSet(a *archiveWriter, prefix, single string) *fileSet {
	f := &fileSet{a: a, prefix: prefix, single: single}
	f.enc = json.NewEncoder(&f.buf)
	f.enc.SetEscapeHTML(false)
	return f
}

// add appends e (one line).
func (f *fileSet) add(e Entry) error {
	if err := f.enc.Encode(e); err != nil {
		return fmt.Errorf("encode %s: %w", e.Key, err)
	}
	f.n++
	f.total++
	if f.single == "" && f.buf.Len() >= chunkSize {
		return f.flush()
	}
	return nil
}

// flush writes the entries held as a data file.
func (f *fileSet) flush() error {
	if f.n == 0 {
		return nil
	}
	name := f.single
	if name == "" {
		name = fmt.Sprintf("%s%06d.jsonl", f.prefix, len(f.names)+1)
	}
	if err := f.a.add(name, f.buf.Bytes(), f.n); err != nil {
		return err
	}
	f.names = append(f.names, name)
	f.buf.Reset()
	f.n = 0
	return nil
}

// classify wraps an error of the gzip or tar layer with [ErrTruncated] or [ErrCorrupt].
func classify(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrTruncated), errors.Is(err, ErrCorrupt):
		return err
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return fmt.Errorf("%w: %v", ErrTruncated, err)
	default:
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
}

// checkedReader classifies the errors of the decompressed stream, so that the tar layer
// above it passes them on as ErrTruncated or ErrCorrupt.
type checkedReader struct{ r io.Reader }

func (c checkedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && err != io.EOF {
		err = classify(err)
	}
	return n, err
}

// readArchive calls each with every file of the archive in r, in order, and checks that the
// archive ends where its compressed stream ends, with a valid gzip checksum. Errors of the
// archive's layers are wrapped with ErrTruncated or ErrCorrupt; each's are returned as they are.
func readArchive(r io.Reader, each func(h *tar.Header, body io.Reader) error) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("read archive: %w", classify(err))
	}
	defer gz.Close()
	cr := checkedReader{gz}
	tr := tar.NewReader(cr)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", classify(err))
		}
		if err := each(h, tr); err != nil {
			return err
		}
	}
	// The end of the tar is not the end of the gzip stream: read it to its checksum.
	if _, err := io.Copy(io.Discard, cr); err != nil {
		return fmt.Errorf("read archive: %w", classify(err))
	}
	return nil
}

// eachLine calls fn with every line of r (without its newline) and its number (from 1).
func eachLine(r io.Reader, fn func(n int, line []byte) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	for n := 1; ; n++ {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			if line[len(line)-1] == '\n' {
				line = line[:len(line)-1]
			}
			if ferr := fn(n, line); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// decodeEntry decodes one line of a data file.
func decodeEntry(line []byte) (Entry, error) {
	var e Entry
	if err := json.Unmarshal(line, &e); err != nil {
		return e, err
	}
	if e.Key == "" {
		return e, errors.New("entry without a key")
	}
	if _, err := e.data(); err != nil {
		return e, fmt.Errorf("key %s: %w", e.Key, err)
	}
	return e, nil
}
