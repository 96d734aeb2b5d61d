package circle_test

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/httpx"
	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/schemas"
	circlesim "github.com/launchready/launchready/simulate/circle"
	"github.com/launchready/launchready/sinks"
	"github.com/launchready/launchready/sinks/circle"
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

func TestCheckNamesWhatTheCommunityLacks(t *testing.T) {
	t.Parallel()
	m := example(t)
	_, p := newSim(t, m, circlesim.Options{})
	if err := p.Check(t.Context(), m); err != nil {
		t.Fatalf("seeded community: %v", err)
	}
	bare := circlesim.New(circlesim.Options{AccessGroups: []circlesim.Ref{{ID: 1001, Name: "Pro members"}}})
	url, err := bare.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	err = circle.New(circle.Options{BaseURL: url + circlesim.Base, Token: config.Secret(bare.Token())}).Check(t.Context(), m)
	if !errors.Is(err, sinks.ErrMissing) || !strings.Contains(err.Error(), "access group 1002 (Starter members)") || !strings.Contains(err.Error(), `profile field "last_synced_at"`) {
		t.Errorf("Check = %v, want ErrMissing naming the starter group and the last_synced_at field", err)
	}
}

func TestCreateOfAMemberThatAppearedRecovers(t *testing.T) {
	t.Parallel()
	m := example(t)
	sim, p := newSim(t, m, circlesim.Options{})
	e := sinktest.Entitlement("cus_1", "race@example.org", "pro", schemas.StatusActive, true, 1)
	// The member joined between our read and our create.
	if _, err := sim.AddMember(circlesim.MemberSeed{Email: e.Email, Tags: []int64{2002}, AccessGroups: []int64{1002}}); err != nil {
		t.Fatal(err)
	}
	var st sinks.State
	o, err := p.Apply(t.Context(), e, &st, sinks.Action{Kind: sinks.ActCreate, Tags: []mapping.Ref{{ID: 2001, Name: "pro"}}})
	if err != nil {
		t.Fatal(err)
	}
	if !o.Refreshed || o.Note != "member existed" || !st.Tags[2002] || !st.Groups[1002] {
		t.Errorf("outcome %+v state %+v: the existing tags and groups must be known", o, st)
	}
	if s := sim.Stats(); s.Invitations != 0 || s.MembersCreated != 1 {
		t.Errorf("stats %+v: no second member, no invitation", s)
	}
}

func TestRemovingWhatIsGoneIsDone(t *testing.T) {
	t.Parallel()
	m := example(t)
	sim, p := newSim(t, m, circlesim.Options{})
	e := sinktest.Entitlement("cus_1", "gone@example.org", "pro", schemas.StatusCanceled, false, 1)
	if _, err := sim.AddMember(circlesim.MemberSeed{Email: e.Email}); err != nil {
		t.Fatal(err)
	}
	st := sinks.State{Found: true, ID: "1"}
	for _, a := range []sinks.Action{{Kind: sinks.ActUntag, Ref: mapping.Ref{ID: 2001}}, {Kind: sinks.ActRemoveGroup, Ref: mapping.Ref{ID: 1001}}} {
		o, err := p.Apply(t.Context(), e, &st, a)
		if err != nil || o.Note != "already absent" || o.HTTPStatus != http.StatusNotFound {
			t.Errorf("%s: %+v %v, want success noted already absent", a.Kind, o, err)
		}
	}
}

func TestReadSkipsGroupsTheMappingDoesNotManage(t *testing.T) {
	t.Parallel()
	m := example(t)
	sim, p := newSim(t, m, circlesim.Options{})
	e := sinktest.Entitlement("cus_1", "a@example.org", "pro", schemas.StatusActive, true, 1)
	if _, err := sim.AddMember(circlesim.MemberSeed{Email: e.Email, Fields: map[string]string{"plan": "pro"}}); err != nil {
		t.Fatal(err)
	}
	st, o, err := p.Read(t.Context(), e, sinks.Target{})
	if err != nil || !st.Found || st.Fields["plan"] != "pro" || o.Attempts != 1 {
		t.Errorf("read %+v %+v %v: one request", st, o, err)
	}
	if _, _, err := p.Read(t.Context(), e, p.Target(m.Desired(e, e.UpdatedAt), e)); err != nil {
		t.Fatal(err)
	}
	if n := sim.Stats().Requests["GET "+circlesim.Base+"/community_members/{community_member_id}/access_groups"]; n != 1 {
		t.Errorf("access group reads %d, want 1 (only when groups are managed)", n)
	}
}

func TestMonthlyBudgetCountsEveryAttempt(t *testing.T) {
	t.Parallel()
	m := example(t)
	sim, _ := newSim(t, m, circlesim.Options{})
	url, err := sim.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sim.SetFaults(circlesim.Faults{Errors: 1})
	budget := httpx.NewBudget(3, nil, nil)
	p := circle.New(circle.Options{BaseURL: url + circlesim.Base, Token: config.Secret(sim.Token()), Budget: budget, MaxRetries: 5, RetryWaitMin: 1, RetryWaitMax: 2})
	e := sinktest.Entitlement("cus_1", "a@example.org", "pro", schemas.StatusActive, true, 1)
	_, _, err = p.Read(t.Context(), e, sinks.Target{})
	if !errors.Is(err, httpx.ErrBudgetExhausted) || budget.Used() != 3 {
		t.Errorf("err = %v, used %d: three attempts (retries count) and then the budget refuses", err, budget.Used())
	}
}
