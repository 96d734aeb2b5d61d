package cdc

import (
	"encoding/binary"
	"errors"
	"testing"
	"time"
)

// msgBuilder writes pgoutput messages for tests.
type msgBuilder []byte

func (b msgBuilder) u8(v byte) msgBuilder    { return append(b, v) }
func (b msgBuilder) u16(v uint16) msgBuilder { return binary.BigEndian.AppendUint16(b, v) }
func (b msgBuilder) u32(v uint32) msgBuilder { return binary.BigEndian.AppendUint32(b, v) }
func (b msgBuilder) u64(v uint64) msgBuilder { return binary.BigEndian.AppendUint64(b, v) }
func (b msgBuilder) str(s string) msgBuilder { return append(append(b, s...), 0) }

// tuple appends a TupleData: nil is null, "\x00u" marks unchanged TOAST.
func (b msgBuilder) tuple(vals ...*string) msgBuilder {
	b = b.u16(uint16(len(vals)))
	for _, v := range vals {
		switch {
		case v == nil:
			b = b.u8('n')
		case *v == "\x00u":
			b = b.u8('u')
		default:
			b = b.u8('t').u32(uint32(len(*v)))
			b = append(b, *v...)
		}
	}
	return b
}

func sp(s string) *string { return &s }

var unchangedToast = sp("\x00u")

func TestDecodeMessages(t *testing.T) {
	t.Parallel()
	commit := time.Date(2024, 5, 1, 10, 0, 0, 123456000, time.UTC)
	micros := uint64(pgMicros(commit))

	b, err := decodeBegin(msgBuilder{'B'}.u64(0x1_0000_0010).u64(micros).u32(77))
	if err != nil || b.FinalLSN != 0x1_0000_0010 || !b.CommitTime.Equal(commit) || b.XID != 77 {
		t.Errorf("begin: %+v %v", b, err)
	}
	c, err := decodeCommit(msgBuilder{'C'}.u8(0).u64(5).u64(9).u64(micros))
	if err != nil || c.CommitLSN != 5 || c.EndLSN != 9 || !c.CommitTime.Equal(commit) {
		t.Errorf("commit: %+v %v", c, err)
	}
	r, err := decodeRelation(msgBuilder{'R'}.u32(16384).str("public").str("users").u8('d').u16(2).
		u8(1).str("id").u32(20).u32(0xFFFFFFFF).u8(0).str("email").u32(25).u32(0xFFFFFFFF))
	if err != nil || r.ID != 16384 || r.Namespace != "public" || r.Name != "users" || r.ReplicaIdentity != 'd' ||
		len(r.Columns) != 2 || !r.Columns[0].Key || r.Columns[1].Key || r.Columns[1].TypeOID != 25 || r.Columns[0].TypeMod != -1 {
		t.Errorf("relation: %+v %v", r, err)
	}
	ty, err := decodeType(msgBuilder{'Y'}.u32(90000).str("public").str("mood"))
	if err != nil || ty.OID != 90000 || ty.Name != "mood" {
		t.Errorf("type: %+v %v", ty, err)
	}
	tr, err := decodeTruncate(msgBuilder{'T'}.u32(2).u8(1).u32(10).u32(11))
	if err != nil || len(tr.RelIDs) != 2 || tr.RelIDs[1] != 11 {
		t.Errorf("truncate: %+v %v", tr, err)
	}
	lm, err := decodeLogical(append(msgBuilder{'M'}.u8(0).u64(42).str(heartbeatPrefix).u32(3), "abc"...))
	if err != nil || lm.Transactional || lm.LSN != 42 || lm.Prefix != heartbeatPrefix || string(lm.Content) != "abc" {
		t.Errorf("message: %+v %v", lm, err)
	}
}

func TestDecodeChanges(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		msg     msgBuilder
		op      byte
		oldKind byte
		old     []string // "" null, "~" unchanged
		new     []string
	}{
		{"insert", msgBuilder{'I'}.u32(1).u8('N').tuple(sp("1"), nil), msgInsert, 0, nil, []string{"1", ""}},
		{"update", msgBuilder{'U'}.u32(1).u8('N').tuple(sp("1"), unchangedToast), msgUpdate, 0, nil, []string{"1", "~"}},
		{"update key", msgBuilder{'U'}.u32(1).u8('K').tuple(sp("1"), nil).u8('N').tuple(sp("2"), sp("x")), msgUpdate, 'K', []string{"1", ""}, []string{"2", "x"}},
		{"update full", msgBuilder{'U'}.u32(1).u8('O').tuple(sp("1"), sp("a")).u8('N').tuple(sp("1"), sp("b")), msgUpdate, 'O', []string{"1", "a"}, []string{"1", "b"}},
		{"delete key", msgBuilder{'D'}.u32(1).u8('K').tuple(sp("1"), nil), msgDelete, 'K', []string{"1", ""}, nil},
		{"delete full", msgBuilder{'D'}.u32(1).u8('O').tuple(sp("1"), sp("a")), msgDelete, 'O', []string{"1", "a"}, nil},
	}
	render := func(tc []tupleCol) []string {
		if tc == nil {
			return nil
		}
		out := make([]string, len(tc))
		for i, c := range tc {
			switch c.Kind {
			case colNull:
				out[i] = ""
			case colUnchanged:
				out[i] = "~"
			default:
				out[i] = string(c.Data)
			}
		}
		return out
	}
	var d changeDecoder
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := d.decode(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			if m.Op != tc.op || m.RelID != 1 || m.OldKind != tc.oldKind {
				t.Errorf("got op %c rel %d old %c", m.Op, m.RelID, m.OldKind)
			}
			if g, w := render(m.Old), tc.old; !equalStrings(g, w) {
				t.Errorf("old %q, want %q", g, w)
			}
			if g, w := render(m.New), tc.new; !equalStrings(g, w) {
				t.Errorf("new %q, want %q", g, w)
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if (a == nil) != (b == nil) || len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Every truncation of a valid message is an error, never a panic.
func TestDecodeTruncated(t *testing.T) {
	t.Parallel()
	msgs := []msgBuilder{
		msgBuilder{'B'}.u64(1).u64(2).u32(3),
		msgBuilder{'C'}.u8(0).u64(1).u64(2).u64(3),
		msgBuilder{'R'}.u32(1).str("s").str("t").u8('d').u16(1).u8(1).str("id").u32(20).u32(0),
		msgBuilder{'Y'}.u32(1).str("s").str("t"),
		msgBuilder{'I'}.u32(1).u8('N').tuple(sp("12"), nil),
		msgBuilder{'U'}.u32(1).u8('O').tuple(sp("1")).u8('N').tuple(sp("2")),
		msgBuilder{'D'}.u32(1).u8('K').tuple(sp("1")),
		msgBuilder{'T'}.u32(1).u8(0).u32(5),
		append(msgBuilder{'M'}.u8(1).u64(1).str("p").u32(2), "ab"...),
	}
	for _, full := range msgs {
		if err := decodeAny(full); err != nil {
			t.Fatalf("%c: full message: %v", full[0], err)
		}
		for n := 1; n < len(full); n++ {
			if err := decodeAny(full[:n]); !errors.Is(err, errMalformed) {
				t.Errorf("%c cut to %d bytes: %v", full[0], n, err)
			}
		}
	}
}

// decodeAny decodes a message of any type (the fuzz target's entry).
func decodeAny(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	var err error
	switch b[0] {
	case msgBegin:
		_, err = decodeBegin(b)
	case msgCommit:
		_, err = decodeCommit(b)
	case msgRelation:
		_, err = decodeRelation(b)
	case msgType:
		_, err = decodeType(b)
	case msgInsert, msgUpdate, msgDelete:
		var d changeDecoder
		_, err = d.decode(b)
	case msgTruncate:
		_, err = decodeTruncate(b)
	case msgMessage:
		_, err = decodeLogical(b)
	}
	return err
}

func TestWireMessages(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 1, 2, 3, 4, 5, 6000, time.UTC)
	x, err := parseXLogData(append(msgBuilder{'w'}.u64(10).u64(20).u64(uint64(pgMicros(now))), 'B'))
	if err != nil || x.Start != 10 || !x.Time.Equal(now) || string(x.Data) != "B" {
		t.Errorf("xlogdata: %+v %v", x, err)
	}
	k, err := parseKeepalive(msgBuilder{'k'}.u64(99).u64(uint64(pgMicros(now))).u8(1))
	if _, err := parseXLogData([]byte{'w', 1, 2}); err == nil {
		t.Error("short XLogData accepted")
	}
	if err != nil || k.End != 99 || !k.Reply {
		t.Errorf("keepalive: %+v %v", k, err)
	}
	if _, err := parseKeepalive([]byte{'k', 0}); err == nil {
		t.Error("short keepalive accepted")
	}
	st := standbyStatus(7, 5, now, true)
	if len(st) != 39 || st[0] != 'd' || binary.BigEndian.Uint32(st[1:]) != 38 || st[5] != 'r' ||
		binary.BigEndian.Uint64(st[6:]) != 7 || binary.BigEndian.Uint64(st[14:]) != 5 || binary.BigEndian.Uint64(st[22:]) != 5 ||
		int64(binary.BigEndian.Uint64(st[30:])) != pgMicros(now) || st[38] != 1 {
		t.Errorf("standby status: % x", st)
	}
}

func TestLSN(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		s string
		l LSN
	}{{"0/0", 0}, {"0/16B3748", 0x16B3748}, {"16/B374D848", 0x16_B374D848}, {"FFFFFFFF/FFFFFFFF", ^LSN(0)}} {
		if got := tc.l.String(); got != tc.s {
			t.Errorf("%d formats as %s, want %s", tc.l, got, tc.s)
		}
		if got, err := ParseLSN(tc.s); err != nil || got != tc.l {
			t.Errorf("ParseLSN(%s) = %d, %v", tc.s, got, err)
		}
	}
	for _, bad := range []string{"", "0", "/1", "1/", "x/1", "1/1/1", "123456789/0"} {
		if _, err := ParseLSN(bad); err == nil {
			t.Errorf("ParseLSN(%q) accepted", bad)
		}
	}
}
