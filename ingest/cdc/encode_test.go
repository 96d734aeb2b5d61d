package cdc

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// testRelation is public.users with one column of each value kind.
func testRelation() *relation {
	defs := []relColumnDef{
		{Name: "id", TypeOID: 20, TypeName: "int8", Key: true},
		{Name: "email", TypeOID: 25, TypeName: "text"},
		{Name: "active", TypeOID: 16, TypeName: "bool"},
		{Name: "score", TypeOID: 701, TypeName: "float8"},
		{Name: "balance", TypeOID: 1700, TypeName: "numeric"},
		{Name: "meta", TypeOID: 3802, TypeName: "jsonb"},
		{Name: "created_at", TypeOID: 1184, TypeName: "timestamptz"},
		{Name: "seen_at", TypeOID: 1114, TypeName: "timestamp"},
		{Name: "bio", TypeOID: 25, TypeName: "text"},
	}
	return newRelation(16384, "public", "users", "lr.cdc.public.users", defs, nil)
}

func row(vals ...*string) []tupleCol {
	out := make([]tupleCol, len(vals))
	for i, v := range vals {
		switch {
		case v == nil:
			out[i] = tupleCol{Kind: colNull}
		case v == unchangedToast:
			out[i] = tupleCol{Kind: colUnchanged}
		default:
			out[i] = tupleCol{Kind: colText, Data: []byte(*v)}
		}
	}
	return out
}

type encodeCase struct {
	name           string
	op             string
	key, before    []tupleCol
	keyOnly        bool
	after          []tupleCol
	snapshot       bool
	want           schemas.Change // Columns, V, Schema, Table and Source are filled in
	wantKafkaKey   string
	wantSourceLSN  string
	wantCommitTime time.Time
}

func encodeCases() []encodeCase {
	full := row(sp("7"), sp("Ann@X.io"), sp("t"), sp("1.5"), sp("12.50"), sp(`{"a": [1, 2]}`), sp("2024-05-01 10:00:00.25+00"), sp("2024-05-01 10:00:00"), sp("line\n\"two\"\t\x01é"))
	nulls := row(sp("8"), sp("b@x.io"), sp("f"), sp("NaN"), nil, nil, sp("infinity"), nil, nil)
	toast := row(sp("7"), sp("new@x.io"), sp("t"), sp("-2e-05"), sp("0"), sp("null"), sp("2024-05-01 10:00:00+00"), sp("2024-05-01 10:00:00.123456"), unchangedToast)
	oldKey := row(sp("7"), nil, nil, nil, nil, nil, nil, nil, nil)
	return []encodeCase{
		{name: "insert", op: "c", key: full, after: full, wantKafkaKey: `{"id":7}`, want: schemas.Change{Op: "c", Key: map[string]any{"id": 7.0},
			After: map[string]any{"id": 7.0, "email": "Ann@X.io", "active": true, "score": 1.5, "balance": "12.50", "meta": map[string]any{"a": []any{1.0, 2.0}},
				"created_at": "2024-05-01T10:00:00.25Z", "seen_at": "2024-05-01T10:00:00", "bio": "line\n\"two\"\t\x01é"}}},
		{name: "nulls and non-numbers", op: "c", key: nulls, after: nulls, wantKafkaKey: `{"id":8}`, want: schemas.Change{Op: "c", Key: map[string]any{"id": 8.0},
			After: map[string]any{"id": 8.0, "email": "b@x.io", "active": false, "score": "NaN", "balance": nil, "meta": nil, "created_at": "infinity", "seen_at": nil, "bio": nil}}},
		{name: "update with unchanged toast", op: "u", key: toast, after: toast, wantKafkaKey: `{"id":7}`, want: schemas.Change{Op: "u", Key: map[string]any{"id": 7.0},
			After: map[string]any{"id": 7.0, "email": "new@x.io", "active": true, "score": -2e-05, "balance": "0", "meta": nil,
				"created_at": "2024-05-01T10:00:00Z", "seen_at": "2024-05-01T10:00:00.123456"}, Unchanged: []string{"bio"}}},
		{name: "update with full before", op: "u", key: toast, before: full, after: toast, wantKafkaKey: `{"id":7}`, want: schemas.Change{Op: "u", Key: map[string]any{"id": 7.0},
			Before: map[string]any{"id": 7.0, "email": "Ann@X.io", "active": true, "score": 1.5, "balance": "12.50", "meta": map[string]any{"a": []any{1.0, 2.0}},
				"created_at": "2024-05-01T10:00:00.25Z", "seen_at": "2024-05-01T10:00:00", "bio": "line\n\"two\"\t\x01é"},
			After: map[string]any{"id": 7.0, "email": "new@x.io", "active": true, "score": -2e-05, "balance": "0", "meta": nil,
				"created_at": "2024-05-01T10:00:00Z", "seen_at": "2024-05-01T10:00:00.123456"}, Unchanged: []string{"bio"}}},
		{name: "delete by key", op: "d", key: oldKey, before: oldKey, keyOnly: true, wantKafkaKey: `{"id":7}`, want: schemas.Change{Op: "d", Key: map[string]any{"id": 7.0},
			Before: map[string]any{"id": 7.0}}},
		{name: "snapshot row", op: "r", key: full, after: full, snapshot: true, wantKafkaKey: `{"id":7}`, want: schemas.Change{Op: "r", Key: map[string]any{"id": 7.0},
			After: map[string]any{"id": 7.0, "email": "Ann@X.io", "active": true, "score": 1.5, "balance": "12.50", "meta": map[string]any{"a": []any{1.0, 2.0}},
				"created_at": "2024-05-01T10:00:00.25Z", "seen_at": "2024-05-01T10:00:00", "bio": "line\n\"two\"\t\x01é"}}},
	}
}

// TestEncode: records decode into schemas.Change with the expected content,
// and say the same as json.Marshal of that Change; the Kafka key is the JSON
// of the key; the output matches the golden file.
func TestEncode(t *testing.T) {
	t.Parallel()
	rel := testRelation()
	commit := time.Date(2024, 5, 1, 10, 0, 1, 500000000, time.UTC)
	var golden bytes.Buffer
	var enc encoder
	for _, tc := range encodeCases() {
		xid := uint32(901)
		if tc.snapshot {
			xid = 0
		}
		tail := sourceTail(0x1_0000_2000, xid, commit, tc.snapshot, "launchready")
		rec, err := enc.encode(rel, tc.op, 0x1_0000_1F00, tail, tc.key, tc.before, tc.keyOnly, tc.after)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		golden.Write(rec.value)
		golden.WriteByte('\n')
		if string(rec.key) != tc.wantKafkaKey {
			t.Errorf("%s: Kafka key %s, want %s", tc.name, rec.key, tc.wantKafkaKey)
		}
		var got schemas.Change
		dec := json.NewDecoder(bytes.NewReader(rec.value))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("%s: %v\n%s", tc.name, err, rec.value)
		}
		want := tc.want
		want.V, want.Schema, want.Table = schemas.CDCVersion, "public", "users"
		want.Columns = []schemas.Column{{Name: "id", Type: "int8", Key: true}, {Name: "email", Type: "text"}, {Name: "active", Type: "bool"},
			{Name: "score", Type: "float8"}, {Name: "balance", Type: "numeric"}, {Name: "meta", Type: "jsonb"},
			{Name: "created_at", Type: "timestamptz"}, {Name: "seen_at", Type: "timestamp"}, {Name: "bio", Type: "text"}}
		want.Source = schemas.CDCSource{LSN: "1/1F00", CommitLSN: "1/2000", XID: xid, CommitTime: commit, Snapshot: tc.snapshot, Slot: "launchready"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got  %+v\n want %+v", tc.name, got, want)
		}
		// The same record marshalled by encoding/json means the same thing.
		std, _ := json.Marshal(want)
		var a, b any
		_ = json.Unmarshal(std, &a)
		_ = json.Unmarshal(rec.value, &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: differs from json.Marshal:\n ours %s\n std  %s", tc.name, rec.value, std)
		}
		if k, _ := json.Marshal(want.Key); string(k) != string(rec.key) {
			t.Errorf("%s: key %s is not json.Marshal's %s", tc.name, rec.key, k)
		}
	}
	path := filepath.Join("testdata", "records.golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, golden.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run TestEncode -update to create it)", err)
	}
	if !bytes.Equal(golden.Bytes(), want) {
		t.Errorf("records differ from %s (run with -update if intended):\n%s", path, golden.String())
	}
}

func TestEncodeRejectsMismatchedTuple(t *testing.T) {
	t.Parallel()
	var enc encoder
	short := row(sp("1"))
	if _, err := enc.encode(testRelation(), "c", 1, sourceTail(1, 1, time.Now(), false, ""), short, nil, false, short); err == nil {
		t.Error("a tuple with fewer columns than the relation was encoded")
	}
	bin := []tupleCol{{Kind: colBinary, Data: []byte{1}}}
	rel := newRelation(1, "s", "t", "x", []relColumnDef{{Name: "id", TypeOID: 23, Key: true}}, nil)
	if _, err := enc.encode(rel, "c", 1, nil, bin, nil, false, bin); err == nil {
		t.Error("binary tuple data was encoded")
	}
}

func TestAppendValue(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		kind valueKind
		in   string
		want string
	}{
		{kindInt, "-42", "-42"},
		{kindInt, "0", "0"},
		{kindInt, "007", `"007"`},
		{kindInt, "12a", `"12a"`},
		{kindFloat, "1e+100", "1e+100"},
		{kindFloat, "-Infinity", `"-Infinity"`},
		{kindFloat, "1.", `"1."`},
		{kindBool, "t", "true"},
		{kindBool, "x", `"x"`},
		{kindJSON, `{"a":1}`, `{"a":1}`},
		{kindJSON, `{bad`, `"{bad"`},
		{kindTimestampTZ, "2024-01-02 03:04:05+00", `"2024-01-02T03:04:05Z"`},
		{kindTimestampTZ, "2024-01-02 03:04:05.000001+00", `"2024-01-02T03:04:05.000001Z"`},
		{kindTimestampTZ, "0044-03-15 00:00:00+00 BC", `"0044-03-15 00:00:00+00 BC"`},
		{kindTimestampTZ, "2024-01-02 03:04:05+05:30", `"2024-01-02 03:04:05+05:30"`},
		{kindTimestamp, "2024-01-02 03:04:05.5", `"2024-01-02T03:04:05.5"`},
		{kindTimestamp, "-infinity", `"-infinity"`},
		{kindString, "a\"b\\c\u2028", `"a\"b\\c` + "\u2028" + `"`},
		{kindString, "bad\xffutf8", `"bad\ufffdutf8"`},
	} {
		got, err := appendValue(nil, tc.kind, tupleCol{Kind: colText, Data: []byte(tc.in)})
		if err != nil || string(got) != tc.want {
			t.Errorf("kind %d %q: got %s (%v), want %s", tc.kind, tc.in, got, err, tc.want)
		}
		if !json.Valid(got) {
			t.Errorf("kind %d %q: invalid JSON %s", tc.kind, tc.in, got)
		}
	}
}

// FuzzDecode feeds arbitrary bytes to the pgoutput decoders (outside input)
// and encodes whatever decodes: no panic, and every record is valid JSON that
// decodes into schemas.Change.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(msgBuilder{'I'}.u32(1).u8('N').tuple(sp("1"), sp("x"), nil, sp("1.5"), sp("2"), sp("{}"), sp("2024-01-01 00:00:00+00"), nil, unchangedToast)))
	f.Add([]byte(msgBuilder{'U'}.u32(1).u8('K').tuple(sp("1")).u8('N').tuple(sp("2"))))
	f.Add([]byte(msgBuilder{'R'}.u32(1).str("s").str("t").u8('f').u16(1).u8(1).str("id").u32(23).u32(0)))
	f.Add([]byte(msgBuilder{'B'}.u64(1).u64(2).u32(3)))
	f.Add([]byte(append(msgBuilder{'M'}.u8(0).u64(9).str("p").u32(1), 'x')))
	f.Add([]byte(msgBuilder{'T'}.u32(1).u8(0).u32(5)))
	rel := testRelation()
	tail := sourceTail(5, 6, time.Unix(0, 0), false, "s")
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = decodeAny(b)
		if len(b) == 0 || (b[0] != msgInsert && b[0] != msgUpdate && b[0] != msgDelete) {
			return
		}
		var d changeDecoder
		m, err := d.decode(b)
		if err != nil {
			return
		}
		keyFrom, after := m.New, m.New
		if keyFrom == nil {
			keyFrom = m.Old
		}
		var enc encoder
		rec, err := enc.encode(rel, "u", 1, tail, keyFrom, m.Old, m.OldKind == 'K', after)
		if err != nil {
			return
		}
		var c schemas.Change
		if err := json.Unmarshal(rec.value, &c); err != nil {
			t.Fatalf("invalid record %q: %v", rec.value, err)
		}
		if !json.Valid(rec.key) {
			t.Fatalf("invalid key %q", rec.key)
		}
	})
}

// FuzzJSONString: the string writer agrees with encoding/json on every input.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "quote\"back\\slash", "ctl\x00\x1f\x7f", "bad\xff\xfe", "é€𝄞", "\u2028\u2029<>&"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ours := appendJSONString(nil, s)
		std, _ := json.Marshal(s)
		var a, b string
		if err := json.Unmarshal(ours, &a); err != nil {
			t.Fatalf("invalid JSON %q for %q: %v", ours, s, err)
		}
		_ = json.Unmarshal(std, &b)
		if a != b {
			t.Fatalf("%q: ours decodes to %q, encoding/json's to %q", s, a, b)
		}
	})
}

// FuzzValue: every column value becomes valid JSON, whatever its kind.
func FuzzValue(f *testing.F) {
	for _, s := range []string{"1", "-0.5e3", "t", `{"a":1}`, "2024-01-01 00:00:00+00", "NaN", "2024-01-01 00:00:00.x+00"} {
		for k := kindString; k <= kindTimestampTZ; k++ {
			f.Add(uint8(k), s)
		}
	}
	f.Fuzz(func(t *testing.T, k uint8, s string) {
		got, err := appendValue(nil, valueKind(k%7), tupleCol{Kind: colText, Data: []byte(s)})
		if err != nil || !json.Valid(got) {
			t.Fatalf("kind %d %q: %s %v", k%7, s, got, err)
		}
		if valueKind(k%7) == kindString && !strings.HasPrefix(string(got), `"`) {
			t.Fatalf("string value not quoted: %s", got)
		}
	})
}
