// Package sourceid derives the stable id of a record from where its line
// came from, so that every output that writes ids (the elasticsearch
// output's `id: source`, the kafka output's source-id header) names the
// same line the same way, on every retry and after every restart.
//
// A record read from a file is named by the agent's identity (instance id
// and host name) and the line's source position (file identity,
// generation, offset): 128 bits of SHA-256, base64url without padding (22
// characters). A record whose input already knows its stable id (the kafka
// input: the producer's source-id header, else topic/partition/offset)
// carries it in event.Event.ID, and that id is kept as it is: a line keeps
// the id its first agent gave it across every tier it crosses.
package sourceid

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"

	"github.com/sidelog/sidelog/event"
)

// Header is the Kafka record header that carries the id between the kafka
// output and the kafka input.
const Header = "sidelog-source-id"

// Prefix is the agent's part of every id: derived once from the instance id
// and the host name.
type Prefix [16]byte

// NewPrefix derives the prefix of an agent's ids.
func NewPrefix(instanceID, hostname string) (p Prefix) {
	h := sha256.New()
	h.Write([]byte("sidelog-es-id\x00")) // the elasticsearch output's ids came first: kept
	h.Write([]byte(instanceID))
	h.Write([]byte{0})
	h.Write([]byte(hostname))
	copy(p[:], h.Sum(nil))
	return p
}

// FromPosition returns the id of the line at pos (ok false for an event
// without a source position).
func (p Prefix) FromPosition(pos event.Position) (id [22]byte, ok bool) {
	if pos.Offset == 0 && pos.FileID == (event.FileID{}) {
		return id, false
	}
	var buf [16 + 8*4 + 4]byte
	copy(buf[:16], p[:])
	binary.LittleEndian.PutUint64(buf[16:], pos.FileID.Dev)
	binary.LittleEndian.PutUint64(buf[24:], pos.FileID.Ino)
	binary.LittleEndian.PutUint64(buf[32:], pos.FileID.Fingerprint)
	binary.LittleEndian.PutUint64(buf[40:], uint64(pos.Offset))
	binary.LittleEndian.PutUint32(buf[48:], pos.Generation)
	sum := sha256.Sum256(buf[:])
	base64.RawURLEncoding.Encode(id[:], sum[:16])
	return id, true
}

// MaxLen is the longest id kept as it is: Elasticsearch refuses an _id
// over 512 bytes. A longer one is replaced by its hash (Append).
const MaxLen = 512

// Append appends e's id to dst: e.ID when the input set one (hashed when it
// is longer than MaxLen), else the id of its source position. ok is false
// when e has neither.
func (p Prefix) Append(dst []byte, e *event.Event) ([]byte, bool) {
	if e.ID != "" {
		if len(e.ID) <= MaxLen {
			return append(dst, e.ID...), true
		}
		sum := sha256.Sum256([]byte(e.ID))
		return base64.RawURLEncoding.AppendEncode(dst, sum[:16]), true
	}
	id, ok := p.FromPosition(e.Pos)
	if !ok {
		return dst, false
	}
	return append(dst, id[:]...), true
}
