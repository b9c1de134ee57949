package shipper

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/cespare/xxhash/v2"
)

// FingerprintBytes is how much of a file's beginning identifies its
// content: a file is the same file as long as its first bytes (up to this
// many) are the same, wherever it was renamed to or copied.
const FingerprintBytes = 1024

// Identity names a followed file in the records shipped from it: the device
// and inode it was read from and a fingerprint of its first Len bytes
// (Len < FingerprintBytes only while the file is shorter than that). Inodes
// follow renames; the fingerprint tells a copy (logrotate's copytruncate)
// from a file truncated and rewritten in place, and an inode reused by a
// new file from the old one.
type Identity struct {
	Dev, Ino uint64
	Len      int
	Hash     uint64
}

// String renders the identity as the header value "dev:ino:len:hash".
func (id Identity) String() string {
	return fmt.Sprintf("%d:%d:%d:%016x", id.Dev, id.Ino, id.Len, id.Hash)
}

// ParseIdentity reads what String wrote.
func ParseIdentity(s string) (Identity, error) {
	var id Identity
	f := strings.Split(s, ":")
	if len(f) != 4 {
		return id, fmt.Errorf("file identity %q: want dev:ino:len:hash", s)
	}
	var err error
	if id.Dev, err = strconv.ParseUint(f[0], 10, 64); err != nil {
		return id, fmt.Errorf("file identity %q: %w", s, err)
	}
	if id.Ino, err = strconv.ParseUint(f[1], 10, 64); err != nil {
		return id, fmt.Errorf("file identity %q: %w", s, err)
	}
	n, err := strconv.Atoi(f[2])
	if err != nil || n < 0 || n > FingerprintBytes {
		return id, fmt.Errorf("file identity %q: bad length", s)
	}
	id.Len = n
	if id.Hash, err = strconv.ParseUint(f[3], 16, 64); err != nil {
		return id, fmt.Errorf("file identity %q: %w", s, err)
	}
	return id, nil
}

// identityOf is the identity of a file on (dev, ino) whose first bytes are
// prefix (at most FingerprintBytes).
func identityOf(dev, ino uint64, prefix []byte) Identity {
	return Identity{Dev: dev, Ino: ino, Len: len(prefix), Hash: xxhash.Sum64(prefix)}
}

// Matches reports whether a file whose first bytes are prefix holds the
// content id was taken from. An identity of an empty prefix matches no
// content (only its inode can name it).
func (id Identity) Matches(prefix []byte) bool {
	return id.Len > 0 && len(prefix) >= id.Len && xxhash.Sum64(prefix[:id.Len]) == id.Hash
}

// compatible reports whether two beginnings could be the same content seen
// at two sizes: one is a prefix of the other.
func compatible(a, b []byte) bool {
	n := min(len(a), len(b))
	return bytes.Equal(a[:n], b[:n])
}

// inode returns the device and inode of fi.
func inode(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino
	}
	return 0, 0
}

// readPrefix reads the first min(size, FingerprintBytes) bytes of f.
func readPrefix(f *os.File, size int64) ([]byte, error) {
	n := min(size, FingerprintBytes)
	b := make([]byte, n)
	if n == 0 {
		return b, nil
	}
	m, err := f.ReadAt(b, 0)
	if m < int(n) && err != nil {
		return b[:m], err
	}
	return b[:m], nil
}
