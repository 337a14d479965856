package fsx

import (
	"errors"
	"hash/crc32"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// nextData returns where the next data after off begins in f (SEEK_DATA), or
// end when only a hole is left; ok is false where the filesystem cannot tell
// (then everything counts as data).
func nextData(f *os.File, off, end int64) (int64, bool) {
	d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return end, true
	}
	if err != nil {
		return off, false
	}
	return min(d, end), true
}

// nextHole returns where the next hole after off begins in f (SEEK_HOLE; the
// end of the file counts as one), or end when unknown.
func nextHole(f *os.File, off, end int64) int64 {
	h, err := unix.Seek(int(f.Fd()), off, unix.SEEK_HOLE)
	if err != nil {
		return end
	}
	return min(h, end)
}

// ChecksumFile returns the CRC-32C of the first size bytes of f, reading only
// its data: a hole is taken as the zeros it reads as, computed, not read — a
// 1 TiB sparse file costs what its data costs.
func ChecksumFile(f *os.File, size int64) (uint32, error) {
	var crc uint32
	buf := make([]byte, 1<<20)
	for off := int64(0); off < size; {
		data, ok := nextData(f, off, size)
		if ok && data > off {
			crc = crcZeros(crc, data-off)
			off = data
			continue
		}
		end := size
		if ok {
			end = nextHole(f, off, size)
		}
		for off < end {
			k, err := f.ReadAt(buf[:min(int64(len(buf)), end-off)], off)
			if k > 0 {
				crc = UpdateChecksum(crc, buf[:k])
				off += int64(k)
			}
			if err != nil && !(errors.Is(err, io.EOF) && off == end) {
				if k == 0 {
					return 0, err
				}
			}
		}
	}
	return crc, nil
}

// ChecksumZeros extends crc by n zero bytes, computed, not read.
func ChecksumZeros(crc uint32, n int64) uint32 { return crcZeros(crc, n) }

// crcZeros extends a CRC-32C (as crc32.Update computes it) by n zero bytes in
// O(log n): appending zeros is a linear map of the CRC register, applied here
// by squaring the one-zero-byte operator (zlib's crc32_combine method).
func crcZeros(crc uint32, n int64) uint32 {
	if n <= 0 {
		return crc
	}
	// crc32.Update works on the inverted register r = ^crc, and one zero byte
	// maps r linearly: r' = table[r&0xff] ^ r>>8. op is that map as a 32×32
	// matrix over GF(2), column i the image of bit i: Update(^e_i, 0) inverted.
	var op [32]uint32
	for i := 0; i < 32; i++ {
		op[i] = ^crc32.Update(^uint32(1<<i), castagnoli, []byte{0})
	}
	reg := ^crc
	for n > 0 { // reg = op^n · reg, by squaring
		if n&1 == 1 {
			reg = gf2Times(&op, reg)
		}
		var sq [32]uint32
		for i := 0; i < 32; i++ {
			sq[i] = gf2Times(&op, op[i])
		}
		op = sq
		n >>= 1
	}
	return ^reg
}

func gf2Times(m *[32]uint32, v uint32) uint32 {
	var out uint32
	for i := 0; v != 0; i, v = i+1, v>>1 {
		if v&1 == 1 {
			out ^= m[i]
		}
	}
	return out
}
