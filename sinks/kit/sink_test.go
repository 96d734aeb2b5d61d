package kit_test

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/httpx"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/schemas"
	kitsim "github.com/launchready/launchready/simulate/kit"
	"github.com/launchready/launchready/sinks"
	"github.com/launchready/launchready/sinks/kit"
	"github.com/launchready/launchready/sinks/sinktest"
)

func example(t *testing.T) *mapping.Mapping {
	t.Helper()
	m, err := mapping.Example()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestCheckNamesWhatTheAccountLacks(t *testing.T) {
	t.Parallel()
	m := example(t)
	_, p := newSim(t, m, kitsim.Options{})
	if err := p.Check(t.Context(), m); err != nil {
		t.Fatalf("seeded account: %v", err)
	}
	bare := kitsim.New(kitsim.Options{Tags: []kitsim.Tag{{ID: 3001, Name: "customer-pro"}}})
	defer bare.Close()
	url, err := bare.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	err = kit.New(kit.Options{BaseURL: url + "/v4", APIKey: config.Secret(bare.APIKey())}).Check(t.Context(), m)
	if !errors.Is(err, sinks.ErrMissing) || !strings.Contains(err.Error(), "tag 3102 (refunded)") || !strings.Contains(err.Error(), `custom field "billing_status"`) {
		t.Errorf("Check = %v, want ErrMissing naming the refunded tag and the billing_status field", err)
	}
}

func TestReadFallsBackToTheKnownSubscriberID(t *testing.T) {
	t.Parallel()
	m := example(t)
	sim, p := newSim(t, m, kitsim.Options{})
	sub, err := sim.AddSubscriber("old.address@example.org", "", []int64{3001}, map[string]string{"plan": "pro"})
	if err != nil {
		t.Fatal(err)
	}
	e := sinktest.Entitlement("cus_1", "new.address@example.org", "pro", schemas.StatusActive, true, 1)
	e.KitSubscriberIDs = []string{strconv.FormatInt(sub.ID, 10)}
	st, o, err := p.Read(t.Context(), e, p.Target(m.Desired(e, e.UpdatedAt), e))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Found || st.ID != e.KitSubscriberIDs[0] || !st.Tags[3001] || st.Fields["plan"] != "pro" || st.Fields["billing_status"] != "" {
		t.Errorf("state %+v", st)
	}
	if _, known := st.Fields["next_renewal"]; !known {
		t.Error("every account field must be in the state, unset ones as empty")
	}
	if o.Attempts != 3 || o.HTTPStatus != http.StatusOK {
		t.Errorf("outcome %+v: look-up, show, tags", o)
	}
}

func TestUpsertOfAnExistingSubscriberReadsItsTags(t *testing.T) {
	t.Parallel()
	m := example(t)
	sim, p := newSim(t, m, kitsim.Options{})
	e := sinktest.Entitlement("cus_1", "race@example.org", "pro", schemas.StatusActive, true, 1)
	// Someone subscribed between our read and our create.
	if _, err := sim.AddSubscriber(e.Email, "", []int64{3100}, nil); err != nil {
		t.Fatal(err)
	}
	var st sinks.State
	o, err := p.Apply(t.Context(), e, &st, sinks.Action{Kind: sinks.ActCreate, Fields: map[string]string{"plan": "pro"}})
	if err != nil {
		t.Fatal(err)
	}
	if !o.Refreshed || o.Note != "subscriber existed" || !st.Found || !st.Tags[3100] || st.Fields["plan"] != "pro" {
		t.Errorf("outcome %+v state %+v: the lead tag must be known so the next diff removes it", o, st)
	}
	if sim.Stats().Created != 1 {
		t.Errorf("created %d subscribers", sim.Stats().Created)
	}
}

func TestRejectedKeyIsA401(t *testing.T) {
	t.Parallel()
	m := example(t)
	sim, _ := newSim(t, m, kitsim.Options{})
	url, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := kit.New(kit.Options{BaseURL: url + "/v4", APIKey: "wrong"})
	e := sinktest.Entitlement("cus_1", "a@example.org", "pro", schemas.StatusActive, true, 1)
	_, _, err = p.Read(t.Context(), e, sinks.Target{})
	var se *httpx.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized || strings.Contains(err.Error(), sim.APIKey()) {
		t.Errorf("err = %v, want a 401 that does not echo the key", err)
	}
}
