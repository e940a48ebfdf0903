package release

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// objects reads commits and tags for the walk. Most objects of a real
// repository sit in pack files: those are read straight from the mapped
// pack, found through its .idx, inflated into one reused buffer. go-git's
// general path (a seek and read per object, a SHA-1 of every object read,
// an LRU cache) costs several times what git log does; this one costs
// about what git log does. Everything else (loose objects, deltified
// objects, other index versions, systems without mmap) goes to go-git.
type objects struct {
	packs    []*pack
	fallback storer.EncodedObjectStorer
	zr       io.ReadCloser
	src      bytes.Reader
	buf      []byte
	bases    map[baseKey]cachedBase
	// fallbacks counts the objects go-git read, for tests.
	fallbacks int
}

// pack is one mapped pack file and its version 2 index.
type pack struct {
	idx, data []byte
	count     uint32
	unmap     func() error
}

func openObjects(gitDir string, fallback storer.EncodedObjectStorer) *objects {
	o := &objects{fallback: fallback}
	if gitDir == "" {
		return o
	}
	dir := filepath.Join(objectsDir(gitDir), "pack")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return o
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".idx") {
			names = append(names, strings.TrimSuffix(e.Name(), ".idx"))
		}
	}
	// Newest first is what git does; any order is correct.
	sort.Strings(names)
	for _, n := range names {
		if p := openPack(filepath.Join(dir, n)); p != nil {
			o.packs = append(o.packs, p)
		}
	}
	return o
}

// objectsDir is the object directory, the common one in a linked work tree.
func objectsDir(gitDir string) string {
	if b, err := os.ReadFile(filepath.Join(gitDir, "commondir")); err == nil {
		c := strings.TrimSpace(string(b))
		if !filepath.IsAbs(c) {
			c = filepath.Join(gitDir, c)
		}
		return filepath.Join(c, "objects")
	}
	return filepath.Join(gitDir, "objects")
}

func openPack(base string) *pack {
	idx, unmapIdx, err := mapFile(base + ".idx")
	if err != nil {
		return nil
	}
	data, unmapData, err := mapFile(base + ".pack")
	if err != nil {
		unmapIdx()
		return nil
	}
	p := &pack{idx: idx, data: data, unmap: func() error { return errors.Join(unmapIdx(), unmapData()) }}
	// Version 2 index: magic, version, 256 fan-out entries, then names,
	// CRCs, 4-byte offsets and 8-byte offsets. Anything else: go-git.
	if len(idx) < 8+256*4+40 || !bytes.Equal(idx[:8], []byte{0xff, 't', 'O', 'c', 0, 0, 0, 2}) ||
		len(data) < 12 || string(data[:4]) != "PACK" {
		p.close()
		return nil
	}
	p.count = binary.BigEndian.Uint32(idx[8+255*4:])
	if uint64(len(idx)) < 8+256*4+uint64(p.count)*(20+4+4)+40 {
		p.close()
		return nil
	}
	return p
}

func (p *pack) close() error { return p.unmap() }

// offset finds h in the index: its offset in the pack, or -1.
func (p *pack) offset(h plumbing.Hash) int64 {
	fan := p.idx[8:]
	lo := uint32(0)
	if h[0] > 0 {
		lo = binary.BigEndian.Uint32(fan[(int(h[0])-1)*4:])
	}
	hi := binary.BigEndian.Uint32(fan[int(h[0])*4:])
	names := p.idx[8+256*4:]
	for lo < hi {
		mid := lo + (hi-lo)/2
		switch c := bytes.Compare(names[mid*20:mid*20+20], h[:]); {
		case c == 0:
			offs := p.idx[8+256*4+uint64(p.count)*24:]
			off := binary.BigEndian.Uint32(offs[mid*4:])
			if off&0x80000000 == 0 {
				return int64(off)
			}
			large := offs[uint64(p.count)*4+uint64(off&0x7fffffff)*8:]
			if len(large) < 8 {
				return -1
			}
			return int64(binary.BigEndian.Uint64(large))
		case c < 0:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return -1
}

// errFallback: this object is for go-git to read.
var errFallback = errors.New("not a plain packed object")

// maxDeltaDepth bounds a delta chain; git's own limit is 4095.
const maxDeltaDepth = 5000

// read returns an object's type and content. The content is valid until
// the next read.
func (o *objects) read(h plumbing.Hash) (plumbing.ObjectType, []byte, error) {
	for _, p := range o.packs {
		off := p.offset(h)
		if off < 0 {
			continue
		}
		t, data, err := o.readAt(p, off, 0)
		if err == nil {
			return t, data, nil
		}
		if !errors.Is(err, errFallback) {
			return 0, nil, fmt.Errorf("read object %s from its pack: %w", h, err)
		}
		break
	}
	return o.readFallback(h)
}

// readAt reads the object at off in p, resolving deltas. A plain object is
// inflated into the reused buffer; an object built from a delta is new
// memory, and bases are kept in a small cache, because a walk reads
// objects whose chains share their bases.
func (o *objects) readAt(p *pack, off int64, depth int) (plumbing.ObjectType, []byte, error) {
	if depth > maxDeltaDepth || off < 12 || off >= int64(len(p.data)) {
		return 0, nil, errFallback
	}
	d := p.data[off:]
	c := d[0]
	t := plumbing.ObjectType((c >> 4) & 7)
	size := uint64(c & 15)
	shift, i := uint(4), 1
	for c&0x80 != 0 {
		if i >= len(d) || shift > 56 {
			return 0, nil, errFallback
		}
		c = d[i]
		size |= uint64(c&0x7f) << shift
		shift += 7
		i++
	}
	if size > 64<<20 {
		return 0, nil, errFallback
	}
	switch t {
	case plumbing.CommitObject, plumbing.TagObject, plumbing.TreeObject, plumbing.BlobObject:
		if depth > 0 {
			data, err := o.inflateNew(d[i:], size)
			return t, data, err
		}
		data, err := o.inflate(d[i:], size)
		return t, data, err
	case plumbing.OFSDeltaObject:
		// The base is at a negative offset, a big-endian varint where each
		// continuation adds one (git's offset encoding).
		if i >= len(d) {
			return 0, nil, errFallback
		}
		c = d[i]
		i++
		rel := int64(c & 0x7f)
		for c&0x80 != 0 {
			if i >= len(d) || rel > 1<<48 {
				return 0, nil, errFallback
			}
			c = d[i]
			i++
			rel = (rel+1)<<7 | int64(c&0x7f)
		}
		bt, base, err := o.base(p, off-rel, depth)
		if err != nil {
			return 0, nil, err
		}
		data, err := o.patch(base, d[i:], size)
		return bt, data, err
	case plumbing.REFDeltaObject:
		if i+20 > len(d) {
			return 0, nil, errFallback
		}
		var bh plumbing.Hash
		copy(bh[:], d[i:i+20])
		bp, boff := p, p.offset(bh)
		if boff < 0 {
			bp = nil
			for _, q := range o.packs {
				if boff = q.offset(bh); boff >= 0 {
					bp = q
					break
				}
			}
			if bp == nil {
				return 0, nil, errFallback
			}
		}
		bt, base, err := o.base(bp, boff, depth)
		if err != nil {
			return 0, nil, err
		}
		data, err := o.patch(base, d[i+20:], size)
		return bt, data, err
	}
	return 0, nil, errFallback
}

// base reads a delta's base through the cache.
func (o *objects) base(p *pack, off int64, depth int) (plumbing.ObjectType, []byte, error) {
	key := baseKey{p, off}
	if b, ok := o.bases[key]; ok {
		return b.t, b.data, nil
	}
	t, data, err := o.readAt(p, off, depth+1)
	if err != nil {
		return 0, nil, err
	}
	if o.bases == nil || len(o.bases) >= 256 {
		o.bases = make(map[baseKey]cachedBase, 256)
	}
	o.bases[key] = cachedBase{t, data}
	return t, data, nil
}

type baseKey struct {
	p   *pack
	off int64
}

type cachedBase struct {
	t    plumbing.ObjectType
	data []byte
}

// patch inflates a delta and applies it to base (git's delta format: the
// sizes of base and result, then copy and insert instructions).
func (o *objects) patch(base, compressed []byte, size uint64) ([]byte, error) {
	delta, err := o.inflate(compressed, size)
	if err != nil {
		return nil, err
	}
	srcSize, delta := deltaSize(delta)
	dstSize, delta := deltaSize(delta)
	if srcSize != uint64(len(base)) || dstSize > 64<<20 {
		return nil, errFallback
	}
	out := make([]byte, 0, dstSize)
	for len(delta) > 0 {
		op := delta[0]
		delta = delta[1:]
		switch {
		case op&0x80 != 0:
			var offset, n uint64
			for b := range 4 {
				if op&(1<<b) != 0 {
					if len(delta) == 0 {
						return nil, errFallback
					}
					offset |= uint64(delta[0]) << (8 * b)
					delta = delta[1:]
				}
			}
			for b := range 3 {
				if op&(0x10<<b) != 0 {
					if len(delta) == 0 {
						return nil, errFallback
					}
					n |= uint64(delta[0]) << (8 * b)
					delta = delta[1:]
				}
			}
			if n == 0 {
				n = 0x10000
			}
			if offset+n > uint64(len(base)) {
				return nil, errFallback
			}
			out = append(out, base[offset:offset+n]...)
		case op != 0:
			if int(op) > len(delta) {
				return nil, errFallback
			}
			out = append(out, delta[:op]...)
			delta = delta[op:]
		default:
			return nil, errFallback
		}
	}
	if uint64(len(out)) != dstSize {
		return nil, errFallback
	}
	return out, nil
}

func deltaSize(d []byte) (uint64, []byte) {
	var n uint64
	var shift uint
	for i, c := range d {
		n |= uint64(c&0x7f) << shift
		shift += 7
		if c&0x80 == 0 || shift > 63 {
			return n, d[i+1:]
		}
	}
	return n, nil
}

// inflate decompresses a size-byte object into the reused buffer.
func (o *objects) inflate(compressed []byte, size uint64) ([]byte, error) {
	if uint64(cap(o.buf)) < size {
		o.buf = make([]byte, size, max(size, 4096))
	}
	return o.inflateInto(o.buf[:size], compressed)
}

// inflateNew decompresses into new memory, for a delta base.
func (o *objects) inflateNew(compressed []byte, size uint64) ([]byte, error) {
	return o.inflateInto(make([]byte, size), compressed)
}

func (o *objects) inflateInto(buf, compressed []byte) ([]byte, error) {
	o.src.Reset(compressed)
	var err error
	if o.zr == nil {
		o.zr, err = zlib.NewReader(&o.src)
	} else {
		err = o.zr.(zlib.Resetter).Reset(&o.src, nil)
	}
	if err != nil {
		return nil, err
	}
	if _, err := io.ReadFull(o.zr, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func (o *objects) readFallback(h plumbing.Hash) (plumbing.ObjectType, []byte, error) {
	o.fallbacks++
	obj, err := o.fallback.EncodedObject(plumbing.AnyObject, h)
	if err != nil {
		return 0, nil, err
	}
	rd, err := obj.Reader()
	if err != nil {
		return 0, nil, err
	}
	defer rd.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(rd); err != nil {
		return 0, nil, err
	}
	return obj.Type(), b.Bytes(), nil
}

func (o *objects) close() error {
	var errs []error
	for _, p := range o.packs {
		errs = append(errs, p.close())
	}
	o.packs = nil
	return errors.Join(errs...)
}

// rawCommit is what the walk needs of a commit.
type rawCommit struct {
	parents []plumbing.Hash
	when    int64
	message []byte
}

// parseCommit reads a commit object's parents, committer time and message.
// Parents are appended to arena, so that a walk allocates them in bulk.
func parseCommit(data []byte, arena []plumbing.Hash) (rawCommit, []plumbing.Hash, error) {
	var c rawCommit
	start := len(arena)
	for len(data) > 0 {
		nl := bytes.IndexByte(data, '\n')
		if nl < 0 {
			return c, arena, errors.New("malformed commit: no message")
		}
		line := data[:nl]
		data = data[nl+1:]
		if len(line) == 0 {
			c.message = data
			break
		}
		switch {
		case bytes.HasPrefix(line, []byte("parent ")):
			var h plumbing.Hash
			if len(line) != 7+40 || !decodeHex(h[:], line[7:]) {
				return c, arena, fmt.Errorf("malformed commit: parent %q", line)
			}
			arena = append(arena, h)
		case bytes.HasPrefix(line, []byte("committer ")):
			c.when = signatureTime(line)
		}
	}
	c.parents = arena[start:len(arena):len(arena)]
	return c, arena, nil
}

// signatureTime reads the Unix time of "committer Name <mail> 1700000000 +0100".
func signatureTime(line []byte) int64 {
	gt := bytes.LastIndexByte(line, '>')
	if gt < 0 {
		return 0
	}
	rest := bytes.TrimLeft(line[gt+1:], " ")
	var t int64
	neg := false
	if len(rest) > 0 && rest[0] == '-' {
		neg, rest = true, rest[1:]
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			break
		}
		t = t*10 + int64(c-'0')
	}
	if neg {
		t = -t
	}
	return t
}

// parseTagTarget reads the object an annotated tag points at.
func parseTagTarget(data []byte) (plumbing.Hash, bool) {
	var h plumbing.Hash
	if len(data) < 7+40 || !bytes.HasPrefix(data, []byte("object ")) || !decodeHex(h[:], data[7:47]) {
		return h, false
	}
	return h, true
}

func decodeHex(dst, src []byte) bool {
	if len(src) != 2*len(dst) {
		return false
	}
	for i := range dst {
		a, ok1 := fromHex(src[2*i])
		b, ok2 := fromHex(src[2*i+1])
		if !ok1 || !ok2 {
			return false
		}
		dst[i] = a<<4 | b
	}
	return true
}

func fromHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
