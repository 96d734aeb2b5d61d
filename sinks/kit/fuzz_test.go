package kit

import (
	"testing"
)

// FuzzParseSubscriberList feeds arbitrary answers to the subscriber
// decoder: it must never panic, and what it accepts has positive ids.
func FuzzParseSubscriberList(f *testing.F) {
	f.Add([]byte(`{"subscribers":[{"id":1,"email_address":"a@example.org","state":"active","fields":{"plan":"pro","n":3,"x":null}}],"pagination":{}}`))
	f.Add([]byte(`{"subscribers":[{"id":"12"}]}`))
	f.Add([]byte(`{"subscriber":{"id":-1}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		subs, err := parseSubscriberList(b)
		if err == nil {
			for _, s := range subs {
				if s.ID <= 0 || s.Fields == nil {
					t.Fatalf("accepted %+v", s)
				}
			}
		}
		if s, err := parseSubscriber(b); err == nil && s.ID <= 0 {
			t.Fatalf("accepted %+v", s)
		}
		if tags, next, err := parseTagPage(b); err == nil && (tags == nil || next != "" && len(next) > len(b)) {
			t.Fatalf("tag page %v %q", tags, next)
		}
		_, _, _ = parseFieldPage(b)
	})
}
