package cdc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Decoding of the pgoutput plugin's messages, protocol version 1
// (https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html).
// The input comes from the server, but it is still outside input: every read
// is bounds-checked and a malformed message is an error, never a panic.

// pgoutput message types.
const (
	msgBegin    = 'B'
	msgCommit   = 'C'
	msgOrigin   = 'O'
	msgRelation = 'R'
	msgType     = 'Y'
	msgInsert   = 'I'
	msgUpdate   = 'U'
	msgDelete   = 'D'
	msgTruncate = 'T'
	msgMessage  = 'M'
)

// Tuple column kinds.
const (
	colNull      = 'n'
	colUnchanged = 'u' // an unchanged TOASTed value the WAL does not carry
	colText      = 't'
	colBinary    = 'b'
)

var errMalformed = errors.New("malformed pgoutput message")

type beginMsg struct {
	FinalLSN   LSN // of the commit record
	CommitTime time.Time
	XID        uint32
}

type commitMsg struct {
	CommitLSN  LSN
	EndLSN     LSN // end of the commit record: where a restart resumes after this transaction
	CommitTime time.Time
}

type relColumn struct {
	Key     bool // part of the replica identity
	Name    string
	TypeOID uint32
	TypeMod int32
}

type relationMsg struct {
	ID              uint32
	Namespace, Name string
	ReplicaIdentity byte // d(efault), n(othing), f(ull), i(ndex)
	Columns         []relColumn
}

type typeMsg struct {
	OID             uint32
	Namespace, Name string
}

// tupleCol is one column value of a tuple; Data aliases the input.
type tupleCol struct {
	Kind byte
	Data []byte
}

// changeMsg is an insert, update or delete.
type changeMsg struct {
	Op    byte // msgInsert, msgUpdate, msgDelete
	RelID uint32
	// OldKind is 'K' (old key columns only), 'O' (the full old row, replica
	// identity full) or 0 (no old tuple).
	OldKind byte
	Old     []tupleCol
	New     []tupleCol
}

type truncateMsg struct {
	Options byte
	RelIDs  []uint32
}

type logicalMsg struct {
	Transactional bool
	LSN           LSN
	Prefix        string
	Content       []byte
}

// wireReader reads big-endian fields; the first short read sets err and
// every later read returns zero values.
type wireReader struct {
	b   []byte
	err error
}

func (r *wireReader) need(n int) bool {
	if r.err != nil {
		return false
	}
	if n < 0 || len(r.b) < n {
		r.err = errMalformed
		return false
	}
	return true
}

func (r *wireReader) u8() byte {
	if !r.need(1) {
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

func (r *wireReader) u16() uint16 {
	if !r.need(2) {
		return 0
	}
	v := binary.BigEndian.Uint16(r.b)
	r.b = r.b[2:]
	return v
}

func (r *wireReader) u32() uint32 {
	if !r.need(4) {
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *wireReader) u64() uint64 {
	if !r.need(8) {
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *wireReader) bytes(n int) []byte {
	if !r.need(n) {
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// str reads a NUL-terminated string (copied: names outlive the buffer).
func (r *wireReader) str() string {
	if r.err != nil {
		return ""
	}
	i := bytes.IndexByte(r.b, 0)
	if i < 0 {
		r.err = errMalformed
		return ""
	}
	s := string(r.b[:i])
	r.b = r.b[i+1:]
	return s
}

func decodeBegin(b []byte) (beginMsg, error) {
	r := wireReader{b: b[1:]}
	m := beginMsg{FinalLSN: LSN(r.u64()), CommitTime: pgTime(int64(r.u64())), XID: r.u32()}
	if r.err != nil {
		return beginMsg{}, fmt.Errorf("begin: %w", r.err)
	}
	return m, nil
}

func decodeCommit(b []byte) (commitMsg, error) {
	r := wireReader{b: b[1:]}
	r.u8() // flags, unused
	m := commitMsg{CommitLSN: LSN(r.u64()), EndLSN: LSN(r.u64()), CommitTime: pgTime(int64(r.u64()))}
	if r.err != nil {
		return commitMsg{}, fmt.Errorf("commit: %w", r.err)
	}
	return m, nil
}

// maxColumns bounds allocations driven by a count read from the input
// (Postgres allows 1,600 columns per table).
const maxColumns = 1664

func decodeRelation(b []byte) (relationMsg, error) {
	r := wireReader{b: b[1:]}
	m := relationMsg{ID: r.u32(), Namespace: r.str(), Name: r.str(), ReplicaIdentity: r.u8()}
	n := int(r.u16())
	if n > maxColumns {
		return relationMsg{}, fmt.Errorf("relation: %d columns: %w", n, errMalformed)
	}
	m.Columns = make([]relColumn, 0, n)
	for i := 0; i < n && r.err == nil; i++ {
		flags := r.u8()
		m.Columns = append(m.Columns, relColumn{Key: flags&1 == 1, Name: r.str(), TypeOID: r.u32(), TypeMod: int32(r.u32())})
	}
	if r.err != nil {
		return relationMsg{}, fmt.Errorf("relation: %w", r.err)
	}
	return m, nil
}

func decodeType(b []byte) (typeMsg, error) {
	r := wireReader{b: b[1:]}
	m := typeMsg{OID: r.u32(), Namespace: r.str(), Name: r.str()}
	if r.err != nil {
		return typeMsg{}, fmt.Errorf("type: %w", r.err)
	}
	return m, nil
}

// tuple reads a TupleData into dst (reused between calls).
func (r *wireReader) tuple(dst []tupleCol) []tupleCol {
	n := int(r.u16())
	if r.err != nil {
		return dst[:0]
	}
	if n > maxColumns {
		r.err = errMalformed
		return dst[:0]
	}
	dst = dst[:0]
	for i := 0; i < n && r.err == nil; i++ {
		kind := r.u8()
		switch kind {
		case colNull, colUnchanged:
			dst = append(dst, tupleCol{Kind: kind})
		case colText, colBinary:
			l := int32(r.u32())
			dst = append(dst, tupleCol{Kind: kind, Data: r.bytes(int(l))})
		default:
			r.err = errMalformed
		}
	}
	return dst
}

// changeDecoder decodes inserts, updates and deletes into tuple buffers it
// reuses: a change is valid until the next call.
type changeDecoder struct {
	old, new []tupleCol
}

func (d *changeDecoder) decode(b []byte) (changeMsg, error) {
	m := changeMsg{Op: b[0]}
	r := wireReader{b: b[1:]}
	m.RelID = r.u32()
	kind := r.u8()
	switch m.Op {
	case msgInsert:
		if kind != 'N' {
			r.err = errMalformed
			break
		}
		d.new = r.tuple(d.new)
		m.New = d.new
	case msgUpdate:
		if kind == 'K' || kind == 'O' {
			m.OldKind = kind
			d.old = r.tuple(d.old)
			m.Old = d.old
			kind = r.u8()
		}
		if kind != 'N' {
			r.err = errMalformed
			break
		}
		d.new = r.tuple(d.new)
		m.New = d.new
	case msgDelete:
		if kind != 'K' && kind != 'O' {
			r.err = errMalformed
			break
		}
		m.OldKind = kind
		d.old = r.tuple(d.old)
		m.Old = d.old
	default:
		r.err = errMalformed
	}
	if r.err != nil {
		return changeMsg{}, fmt.Errorf("%c change: %w", m.Op, r.err)
	}
	return m, nil
}

func decodeTruncate(b []byte) (truncateMsg, error) {
	r := wireReader{b: b[1:]}
	n := int(r.u32())
	m := truncateMsg{Options: r.u8()}
	if n < 0 || n > len(r.b)/4 {
		return truncateMsg{}, fmt.Errorf("truncate: %w", errMalformed)
	}
	for i := 0; i < n; i++ {
		m.RelIDs = append(m.RelIDs, r.u32())
	}
	if r.err != nil {
		return truncateMsg{}, fmt.Errorf("truncate: %w", r.err)
	}
	return m, nil
}

func decodeLogical(b []byte) (logicalMsg, error) {
	r := wireReader{b: b[1:]}
	m := logicalMsg{Transactional: r.u8()&1 == 1, LSN: LSN(r.u64()), Prefix: r.str()}
	m.Content = r.bytes(int(int32(r.u32())))
	if r.err != nil {
		return logicalMsg{}, fmt.Errorf("message: %w", r.err)
	}
	return m, nil
}
