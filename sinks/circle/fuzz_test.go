package circle

import "testing"

// FuzzParseMember feeds arbitrary answers to the member and list decoders:
// they must never panic, and what they accept has positive ids.
func FuzzParseMember(f *testing.F) {
	f.Add([]byte(`{"id":31337,"email":"a@example.org","member_tags":[{"id":77,"name":"pro"}],"flattened_profile_fields":{"plan":"pro","x":null,"choice":["A","B"],"n":4}}`))
	f.Add([]byte(`{"message":"ok","community_member":{"id":"2","member_tags":[]}}`))
	f.Add([]byte(`{"page":1,"has_next_page":true,"records":[{"id":1,"name":"Pro"},{"id":2,"key":"plan"}]}`))
	f.Add([]byte(`{"id":0}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := parseMember(b); err == nil && (m.ID <= 0 || m.Tags == nil || m.Fields == nil) {
			t.Fatalf("accepted %+v", m)
		}
		if m, err := parseCreated(b); err == nil && m.ID <= 0 {
			t.Fatalf("accepted %+v", m)
		}
		if recs, _, err := parseIDPage(b); err == nil && recs == nil {
			t.Fatal("nil records without error")
		}
	})
}
