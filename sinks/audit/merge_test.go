package audit

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/launchready/launchready/schemas"
)

// TestTimelineFollowsMerges: customers merged into one another tell one
// story, whichever of their emails or ids is asked about, and why answers
// for the customer that survived the merges.
func TestTimelineFollowsMerges(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	T := time.Now().Add(-time.Hour).Truncate(time.Second)
	at := func(s int) time.Time { return T.Add(time.Duration(s) * time.Second) }
	ident := func(s int, id schemas.Identity) any { id.V, id.UpdatedAt = 1, at(s); return id }
	raw := func(s int, id, cus string) any {
		return schemas.RawEvent{V: 1, Provider: "stripe", EventID: id, Type: "invoice.paid", ObjectID: cus, ReceivedAt: at(s), Body: json.RawMessage(`{}`)}
	}
	h.store(
		// c_older was merged into c_old, which was merged into c_new.
		h.msg("identity", ident(1, schemas.Identity{CustomerID: "c_older", Email: "older@x.io", Stripe: []string{"cus_older"}, Version: 1}), at(1)),
		h.msg("identity", ident(2, schemas.Identity{CustomerID: "c_old", Email: "old@x.io", Stripe: []string{"cus_old"}, Version: 1}), at(2)),
		h.msg("identity", ident(3, schemas.Identity{CustomerID: "c_new", Email: "new@x.io", Emails: []string{"new@x.io", "old@x.io"}, Stripe: []string{"cus_new"}, Version: 1}), at(3)),
		h.msg("identity", ident(4, schemas.Identity{CustomerID: "c_older", Email: "older@x.io", MergedInto: "c_old", Version: 2}), at(4)),
		h.msg("identity", ident(5, schemas.Identity{CustomerID: "c_old", Email: "old@x.io", MergedInto: "c_new", Version: 2}), at(5)),
		h.msg("raw.stripe", raw(10, "evt_older", "cus_older"), at(10)),
		h.msg("raw.stripe", raw(11, "evt_old", "cus_old"), at(11)),
		h.msg("raw.stripe", raw(12, "evt_new", "cus_new"), at(12)),
		h.msg("raw.stripe", raw(13, "evt_stranger", "cus_stranger"), at(13)),
		h.msg("entitlements", schemas.Entitlement{V: 1, CustomerID: "c_new", Status: "active", Access: true, Version: 1, UpdatedAt: at(14)}, at(14)),
		h.msg("entitlements", schemas.Entitlement{V: 1, CustomerID: "c_old", Status: "active", Access: true, Version: 2, Deleted: true, UpdatedAt: at(15)}, at(15)),
	)
	ctx := context.Background()
	db := h.cfg.ClickHouseDatabase
	for _, q := range []TimelineQuery{{Email: "older@x.io"}, {Email: "old@x.io"}, {Email: "new@x.io"}, {Customer: "c_new"}, {Customer: "cus_old"}} {
		res, err := Timeline(ctx, h.conn, db, q)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(res.CustomerIDs, []string{"c_new", "c_old", "c_older"}) {
			t.Errorf("%+v: customers %v", q, res.CustomerIDs)
		}
		var events []string
		for _, e := range res.Entries {
			if e.Kind == EntryEvent {
				events = append(events, e.ID)
			}
		}
		if !slices.Equal(events, []string{"evt_older", "evt_old", "evt_new"}) {
			t.Errorf("%+v: events %v", q, events)
		}
	}
	a, err := Why(ctx, h.conn, db, WhyQuery{Email: "old@x.io"})
	if err != nil {
		t.Fatal(err)
	}
	if a.CustomerID != "c_new" || !a.Access || !slices.Equal(a.Related, []string{"c_old", "c_older"}) {
		t.Errorf("why: customer %s access %v related %v\n%s", a.CustomerID, a.Access, a.Related, a.Text)
	}
	a, err = Why(ctx, h.conn, db, WhyQuery{Customer: "c_old"})
	if err != nil {
		t.Fatal(err)
	}
	if a.CustomerID != "c_new" {
		t.Errorf("why of a merged-away id answers for %s, want the survivor", a.CustomerID)
	}
}
