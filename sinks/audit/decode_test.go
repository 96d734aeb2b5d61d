package audit

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/schemas"
)

// jsonNames lists the JSON field names of the envelope types, nested ones
// included.
var jsonNames = func() []string {
	var names []string
	var add func(t reflect.Type)
	add = func(t reflect.Type) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if f.Anonymous {
				add(f.Type)
				continue
			}
			if n, _, _ := strings.Cut(f.Tag.Get("json"), ","); n != "" && n != "-" {
				names = append(names, n)
			}
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}) {
				add(f.Type)
			}
		}
	}
	for _, v := range []any{schemas.Identity{}, schemas.Entitlement{}, schemas.Decision{}, schemas.Mismatch{}, schemas.SinkResult{}, schemas.Change{}, schemas.RawEvent{}} {
		add(reflect.TypeOf(v))
	}
	return names
}()

// canonical reports whether no field name in rec differs only in case from
// an envelope's (encoding/json folds case, the one-pass decoders do not).
func canonical(rec []byte) bool {
	var doc any
	if json.Unmarshal(rec, &doc) != nil {
		return false
	}
	ok := true
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			for k, val := range x {
				for _, n := range jsonNames {
					if k != n && strings.EqualFold(k, n) {
						ok = false
					}
				}
				walk(val)
			}
		case []any:
			for _, val := range x {
				walk(val)
			}
		}
	}
	walk(doc)
	return ok
}

// checkDecoder compares a one-pass decoder with encoding/json on rec: it
// must refuse invalid JSON, and agree on every record both accept.
func checkDecoder[T any](t *testing.T, rec []byte, fast func([]byte) (T, error), ignore ...func(*T)) {
	t.Helper()
	got, err := fast(rec)
	if err == nil && !json.Valid(rec) {
		t.Fatalf("invalid JSON accepted: %q", rec)
	}
	var want T
	if err != nil || json.Unmarshal(rec, &want) != nil || !canonical(rec) {
		return
	}
	for _, f := range ignore {
		f(&want)
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Fatalf("decode of %s\n got %s\nwant %s", rec, g, w)
	}
}

func checkAllDecoders(t *testing.T, rec []byte) {
	checkDecoder(t, rec, decodeIdentity)
	checkDecoder(t, rec, decodeEntitlement)
	checkDecoder(t, rec, decodeDecision)
	checkDecoder(t, rec, decodeMismatch)
	checkDecoder(t, rec, decodeSinkResult)
	// The column list and the unchanged TOASTed columns are not stored.
	checkDecoder(t, rec, decodeChange, func(c *changeWire) { c.Columns, c.Unchanged = nil, nil })
}

func decoderSeeds(t testing.TB) [][]byte {
	end := t0.Add(30 * 24 * time.Hour)
	var out [][]byte
	for _, v := range []any{
		schemas.Identity{V: 1, CustomerID: "c_1", UserID: "u", Email: "a@b.c", Emails: []string{"a@b.c", "d@e.f"}, Stripe: []string{"cus_1"},
			Circle: []string{"1"}, Kit: []string{"2"}, Sessions: []string{}, MergedInto: "c_0", Version: 9, UpdatedAt: t0},
		schemas.Entitlement{V: 1, CustomerID: "c", Email: "a@b.c", Plan: "pro", Status: "active", Access: true, CurrentPeriodEnd: &end,
			Flagged: true, FlagReason: "dispute", SourceEventIDs: []string{"evt_1"}, Version: 3, UpdatedAt: t0, LastEventAt: t0, IngestedAt: t0,
			CircleMemberIDs: []string{"1"}, Deleted: true},
		schemas.Decision{V: 1, DecisionID: "d", CustomerID: "c", Kind: "entitlement", Rule: "r \"quoted\" \u00e9", Before: json.RawMessage(`{"a": [1, 2]}`),
			After: json.RawMessage(`null`), CausingIDs: []string{"evt_1", "cdc:x"}, Flagged: true, At: t0, ProviderTime: t0},
		schemas.Mismatch{V: 1, MismatchID: "m", CustomerID: "c", Kind: "k", System: "circle", State: "open", Detail: "d", At: t0},
		schemas.SinkResult{V: 1, ActionID: "a", CustomerID: "c", Email: "a@b.c", Provider: "kit", Action: "tag", Target: "t", Status: "error",
			HTTPStatus: 503, Error: "e", Attempts: 3, DurationMS: 12.5, EntitlementVersion: 4, At: t0},
		map[string]any{"v": 1, "op": "u", "schema": "public", "table": "users", "key": map[string]any{"id": 1}, "before": nil,
			"after": map[string]any{"id": 1, "email": "x@y.z"}, "columns": []any{map[string]any{"name": "id", "type": "int8", "key": true}},
			"unchanged": []string{"bio"}, "source": map[string]any{"lsn": "0/1", "commit_lsn": "0/2", "xid": 7, "commit_time": t0, "snapshot": true, "slot": "s"}},
	} {
		b, _ := json.Marshal(v)
		out = append(out, b)
	}
	return append(out,
		[]byte(`{"v":null,"customer_id":null,"emails":null,"current_period_end":null,"duration_ms":-1.5e3,"xid":0,"source":null}`),
		[]byte(` { "customer_id" : "c" , "emails" : [ "a" , null ] , "unknown" : { "x" : [ ] } } `),
		[]byte(`{"customer_id":"first","customer_id":"last","source":{"lsn":"a"},"source":{"slot":"b"}}`),
	)
}

func TestDecodersMatchJSON(t *testing.T) {
	t.Parallel()
	for _, rec := range decoderSeeds(t) {
		checkAllDecoders(t, rec)
	}
	refuse := func(name string, err error) {
		if err == nil {
			t.Errorf("%s accepted a record encoding/json refuses", name)
		}
	}
	_, err := decodeIdentity([]byte(`{"v":"1"}`))
	refuse("string version", err)
	_, err = decodeIdentity([]byte(`{"version":1.5}`))
	refuse("fractional version", err)
	_, err = decodeEntitlement([]byte(`{"access":"yes"}`))
	refuse("string bool", err)
	_, err = decodeIdentity([]byte(`{"emails":"a"}`))
	refuse("string for array", err)
	_, err = decodeDecision([]byte(`{"causing_event_ids":[1]}`))
	refuse("number in string array", err)
	_, err = decodeChange([]byte(`{"source":{"xid":-1}}`))
	refuse("negative xid", err)
	_, err = decodeChange([]byte(`{"source":[]}`))
	refuse("array for object", err)
	_, err = decodeSinkResult([]byte(`{"http_status":99999999999999999999}`))
	refuse("int overflow", err)
	_, err = decodeMismatch([]byte(`{"at":"noon"}`))
	refuse("bad time", err)
	for _, rec := range []string{`{"a":1`, `[]`, `{} {}`, `{"a":tru}`} {
		_, err = decodeMismatch([]byte(rec))
		refuse(rec, err)
	}
}

// FuzzDecoders: the one-pass envelope decoders refuse invalid JSON and agree
// with encoding/json on every record both accept.
func FuzzDecoders(f *testing.F) {
	for _, rec := range decoderSeeds(f) {
		f.Add(rec)
	}
	f.Fuzz(func(t *testing.T, rec []byte) { checkAllDecoders(t, rec) })
}

// FuzzChangedColumns: the columns an update changed are those encoding/json
// finds by comparing the two row images' values.
func FuzzChangedColumns(f *testing.F) {
	f.Add([]byte(`{"id":1,"email":"a@x.org","plan":"basic"}`), []byte(`{"id":1, "email":"a@x.org","plan":"pro","new":null}`))
	f.Add([]byte(`null`), []byte(`{"a":1}`))
	f.Add([]byte(`{"a":[1,2],"b":{"c":"\u00e9"}}`), []byte(`{"a":[1,2] ,"b":{"c":"é"},"a":3}`))
	f.Add([]byte(`{"\u0061":1}`), []byte(`[1]`))
	f.Fuzz(func(t *testing.T, before, after []byte) {
		want := []string{}
		var b, a map[string]json.RawMessage
		if json.Unmarshal(before, &b) == nil && json.Unmarshal(after, &a) == nil {
			for k, v := range a {
				if old, ok := b[k]; !ok || string(old) != string(v) {
					want = append(want, k)
				}
			}
			slices.Sort(want)
		}
		if len(before) == 0 || len(after) == 0 {
			want = []string{}
		}
		got := changedColumns(schemas.OpUpdate, before, after)
		if !slices.Equal(got, want) {
			t.Fatalf("changedColumns(%q, %q) = %q, encoding/json finds %q", before, after, got, want)
		}
	})
}

// FuzzPlainRun: the word-at-a-time check agrees with a byte-by-byte one.
func FuzzPlainRun(f *testing.F) {
	f.Add([]byte("plain text, 8+ bytes long"))
	f.Add([]byte("tab\there"))
	f.Add([]byte(`back\slash in the middle of a run`))
	f.Add([]byte("\x7f\x80\xff\x1f........"))
	f.Fuzz(func(t *testing.T, b []byte) {
		want := true
		for _, c := range b {
			if c < 0x20 || c == '\\' || c == '"' {
				want = false
			}
		}
		if bytes.IndexByte(b, '"') >= 0 {
			return // runs never hold a quote
		}
		if got := plainRun(b); got != want {
			t.Fatalf("plainRun(%q) = %v, want %v", b, got, want)
		}
	})
}
