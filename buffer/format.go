package buffer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// On-disk format, version 1. All integers are little endian.
//
// Segment file "<id as 16 hex digits>.seg":
//
//	header (40 bytes): magic "SDLGSEG\x00" | version u32 | reserved u32 |
//	                   segment id u64 | first seq u64 | created unix ms i64
//	frames, back to back:
//	  sync marker FE 53 4C FF | crc32c u32 | length u32 | seq u64 | time unix ms i64 | payload
//
// The CRC32C covers length, seq, time and payload. Bit 31 of length says the
// payload is zstd-compressed; the low 31 bits are the payload's length. The
// marker holds bytes that never occur in UTF-8 text, so after a damaged frame
// recovery scans for the next marker and accepts a frame only if its CRC
// matches. Every record has a sequence number one above the record written
// before it, so a gap between good frames counts the records lost in between.
//
// Ledger file "ledger": two 64-byte slots written alternately, each
// self-checking:
//
//	magic "SDLGLEDG" | version u32 | reserved u32 | generation u64 |
//	ack seq u64 | write seq u64 | ack time unix ms i64 | reserved u64 | crc32c u32 | pad
//
// The slot with the highest generation and a valid CRC wins. Every record with
// a sequence number below ack seq has been acknowledged.
const (
	formatVersion = 1
	segHeaderSize = 40
	frameHeader   = 28
	ledgerSlot    = 64
	lenMask       = 1<<31 - 1
	zstdBit       = 1 << 31
	// maxFrame bounds a payload; a length above it is damage.
	maxFrame = 1 << 30
)

var (
	segMagic    = [8]byte{'S', 'D', 'L', 'G', 'S', 'E', 'G', 0}
	ledgerMagic = [8]byte{'S', 'D', 'L', 'G', 'L', 'E', 'D', 'G'}
	syncMarker  = [4]byte{0xFE, 0x53, 0x4C, 0xFF}
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
)

const ledgerName = "ledger"

func segName(id uint64) string { return fmt.Sprintf("%016x.seg", id) }

func parseSegName(name string) (uint64, bool) {
	s, ok := strings.CutSuffix(name, ".seg")
	if !ok || len(s) != 16 {
		return 0, false
	}
	id, err := strconv.ParseUint(s, 16, 64)
	return id, err == nil
}

type segHeader struct {
	id       uint64
	firstSeq uint64
	created  int64
}

func appendSegHeader(dst []byte, h segHeader) []byte {
	dst = append(dst, segMagic[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, formatVersion)
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = binary.LittleEndian.AppendUint64(dst, h.id)
	dst = binary.LittleEndian.AppendUint64(dst, h.firstSeq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(h.created))
	return dst
}

func parseSegHeader(b []byte) (segHeader, error) {
	if len(b) < segHeaderSize {
		return segHeader{}, fmt.Errorf("short header (%d bytes)", len(b))
	}
	if !bytes.Equal(b[:8], segMagic[:]) {
		return segHeader{}, fmt.Errorf("bad magic %q", b[:8])
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != formatVersion {
		return segHeader{}, fmt.Errorf("unsupported version %d", v)
	}
	return segHeader{
		id:       binary.LittleEndian.Uint64(b[16:]),
		firstSeq: binary.LittleEndian.Uint64(b[24:]),
		created:  int64(binary.LittleEndian.Uint64(b[32:])),
	}, nil
}

// appendFrame appends one framed record.
func appendFrame(dst []byte, seq uint64, ms int64, payload []byte, zstd bool) []byte {
	n := len(dst)
	l := uint32(len(payload))
	if zstd {
		l |= zstdBit
	}
	dst = append(dst, syncMarker[:]...)
	dst = append(dst, 0, 0, 0, 0) // crc, filled below
	dst = binary.LittleEndian.AppendUint32(dst, l)
	dst = binary.LittleEndian.AppendUint64(dst, seq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(ms))
	dst = append(dst, payload...)
	binary.LittleEndian.PutUint32(dst[n+4:], crc32.Checksum(dst[n+8:], castagnoli))
	return dst
}

type frame struct {
	seq     uint64
	ms      int64
	zstd    bool
	payload []byte // aliases the input
	size    int    // bytes of the whole frame
}

type frameStatus int

const (
	frameOK    frameStatus = iota
	frameShort             // b ends before the frame does (torn, or read more)
	frameBad               // not a frame: marker, length or CRC wrong
)

// parseFrame parses the frame at the start of b.
func parseFrame(b []byte) (frame, frameStatus) {
	if len(b) < frameHeader {
		if len(b) >= 4 && !bytes.Equal(b[:4], syncMarker[:]) {
			return frame{}, frameBad
		}
		return frame{}, frameShort
	}
	if !bytes.Equal(b[:4], syncMarker[:]) {
		return frame{}, frameBad
	}
	l := binary.LittleEndian.Uint32(b[8:])
	n := int(l & lenMask)
	if n > maxFrame {
		return frame{}, frameBad
	}
	if len(b) < frameHeader+n {
		return frame{}, frameShort
	}
	if crc32.Checksum(b[8:frameHeader+n], castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return frame{}, frameBad
	}
	return frame{
		seq:     binary.LittleEndian.Uint64(b[12:]),
		ms:      int64(binary.LittleEndian.Uint64(b[20:])),
		zstd:    l&zstdBit != 0,
		payload: b[frameHeader : frameHeader+n],
		size:    frameHeader + n,
	}, frameOK
}

// nextMarker returns the index of the next sync marker in b at or after
// from, or -1.
func nextMarker(b []byte, from int) int {
	if from >= len(b) {
		return -1
	}
	i := bytes.Index(b[from:], syncMarker[:])
	if i < 0 {
		return -1
	}
	return from + i
}

type ledgerState struct {
	gen      uint64
	ackSeq   uint64
	writeSeq uint64
	ackMs    int64
}

func encodeLedger(dst []byte, l ledgerState) []byte {
	n := len(dst)
	dst = append(dst, ledgerMagic[:]...)
	dst = binary.LittleEndian.AppendUint32(dst, formatVersion)
	dst = binary.LittleEndian.AppendUint32(dst, 0)
	dst = binary.LittleEndian.AppendUint64(dst, l.gen)
	dst = binary.LittleEndian.AppendUint64(dst, l.ackSeq)
	dst = binary.LittleEndian.AppendUint64(dst, l.writeSeq)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(l.ackMs))
	dst = binary.LittleEndian.AppendUint64(dst, 0)
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[n:], castagnoli))
	for len(dst)-n < ledgerSlot {
		dst = append(dst, 0)
	}
	return dst
}

func decodeLedger(b []byte) (ledgerState, bool) {
	if len(b) < ledgerSlot || !bytes.Equal(b[:8], ledgerMagic[:]) {
		return ledgerState{}, false
	}
	if binary.LittleEndian.Uint32(b[8:]) != formatVersion {
		return ledgerState{}, false
	}
	if crc32.Checksum(b[:56], castagnoli) != binary.LittleEndian.Uint32(b[56:]) {
		return ledgerState{}, false
	}
	return ledgerState{
		gen:      binary.LittleEndian.Uint64(b[16:]),
		ackSeq:   binary.LittleEndian.Uint64(b[24:]),
		writeSeq: binary.LittleEndian.Uint64(b[32:]),
		ackMs:    int64(binary.LittleEndian.Uint64(b[40:])),
	}, true
}

// pickLedger returns the newest valid slot of a ledger file's contents.
// valid is the number of valid slots (0, 1 or 2).
func pickLedger(b []byte) (best ledgerState, valid int) {
	for i := 0; i+ledgerSlot <= len(b) && i < 2*ledgerSlot; i += ledgerSlot {
		if l, ok := decodeLedger(b[i : i+ledgerSlot]); ok {
			if valid == 0 || l.gen > best.gen {
				best = l
			}
			valid++
		}
	}
	return best, valid
}
