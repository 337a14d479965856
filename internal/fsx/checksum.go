package fsx

import (
	"hash/crc32"
	"io"
)

// Checksums are CRC-32C (Castagnoli: hardware-accelerated), everywhere: journal
// records, merge outputs and inputs, archives.

// UpdateChecksum extends crc with p.
func UpdateChecksum(crc uint32, p []byte) uint32 { return crc32.Update(crc, castagnoli, p) }

// ChecksumWriter counts and checksums what passes through it to W.
type ChecksumWriter struct {
	W   io.Writer
	N   int64
	Sum uint32
}

func (c *ChecksumWriter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	c.Sum = UpdateChecksum(c.Sum, p[:n])
	return n, err
}

// Verify reports whether the file r (identity), last seen as name in d and
// found wherever it now is, has exactly size bytes whose checksum is sum. Any
// error reading it is a "no".
func (d *Dir) Verify(name string, r FileRef, size int64, sum uint32) bool {
	r.Name = name
	at, st, err := d.Locate(r) // a writer may have renamed it
	if err != nil || st.Size != size {
		return false
	}
	f, err := d.OpenRead(at, st)
	if err != nil {
		return false
	}
	defer f.Close()
	got, err := ChecksumFile(f, size)
	return err == nil && got == sum
}

// Stat returns the identity part of r as a Stat, for identity-checked calls
// such as Unlink.
func (r FileRef) Stat() Stat {
	return Stat{Kind: Regular, Dev: r.Dev, Ino: r.Ino, Btime: r.Gen}
}
