package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/schemas"
	circlesim "github.com/launchready/launchready/simulate/circle"
	"github.com/launchready/launchready/simulate/stripe"
	"github.com/launchready/launchready/simulate/traffic"
	"github.com/launchready/launchready/sinks/audit"
)

func has(ids []int64, id int64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func (p *pipeline) planRefs(plan string) (groups, circleTags, kitTags []int64) {
	pl, _ := p.mapping.Plan(plan)
	for _, r := range pl.Circle.AccessGroups {
		groups = append(groups, r.ID)
	}
	for _, r := range pl.Circle.MemberTags {
		circleTags = append(circleTags, r.ID)
	}
	for _, r := range pl.Kit.Tags {
		kitTags = append(kitTags, r.ID)
	}
	return
}

func (p *pipeline) kitStatusTag(status string) int64 { return p.mapping.Kit.StatusTags[status][0].ID }

// Signup: a new app user who also joins Circle and subscribes to the
// newsletter ends as one customer record linking all three, with one Kit
// subscriber, and no welcome trigger (tag) fires twice. (Kit subscribers are
// only ever created by the sinks for customers with access: a prospect's
// consent to email comes from their own signup, never from launchready.)
func TestSignup(t *testing.T) {
	p := thePipeline(t)
	cs := p.population(t, 3, traffic.LifeLead)
	for _, c := range cs {
		c.InCircle, c.InKit = true, true
	}
	dupBefore := p.kit.Stats().DuplicateTags
	p.drive(t, cs, 0)
	p.converge(t, cs, 60*time.Second)
	lead := p.mapping.Kit.LeadTags[0].ID
	for _, c := range cs {
		eventually(t, 60*time.Second, "one customer record linking app, Circle and Kit for "+c.Email, func() (bool, string) {
			snap, err := traffic.ReadSnapshot(context.Background(), p.cfg)
			if err != nil {
				return false, err.Error()
			}
			var found []schemas.Identity
			for _, id := range snap.Identities {
				if id.MergedInto == "" && (id.UserID == c.UserID || id.Email == c.Email) {
					found = append(found, id)
				}
			}
			if len(found) != 1 {
				return false, fmt.Sprintf("%d records", len(found))
			}
			return len(found[0].Circle) == 1 && len(found[0].Kit) == 1, fmt.Sprintf("%+v", found[0])
		})
		n := 0
		var tags []int64
		for _, s := range p.kit.Subscribers() {
			if strings.EqualFold(strings.TrimSpace(s.Email), c.Email) {
				n++
				tags = s.Tags
			}
		}
		if n != 1 || !has(tags, lead) {
			t.Errorf("%s: %d Kit subscribers, tags %v; want one, tagged as a lead", c.Email, n, tags)
		}
	}
	if d := p.kit.Stats().DuplicateTags - dupBefore; d != 0 {
		t.Fatalf("%d duplicate tag calls: a welcome trigger fired twice", d)
	}
}

// Payment success: the entitlement is active, pushed to Circle well within
// 60 s, and support sees the right answer in `audit why`.
func TestPaymentSuccess(t *testing.T) {
	p := thePipeline(t)
	cs := p.population(t, 2, traffic.LifePaid)
	for _, c := range cs {
		c.InCircle = true
	}
	p.drive(t, cs, 0)
	sent := time.Now()
	p.converge(t, cs, 60*time.Second)
	for _, c := range cs {
		groups, _, _ := p.planRefs(c.Plan)
		eventually(t, 60*time.Second, "Circle access for "+c.Email, func() (bool, string) {
			m, ok := p.circle.Member(traffic.Variant(c.Email, c.N+3))
			if !ok {
				return false, "no member"
			}
			return has(m.AccessGroups, groups[0]), fmt.Sprintf("groups %v", m.AccessGroups)
		})
		t.Logf("payment success: %s had Circle access %s after its last webhook was accepted", c.Email, time.Since(sent).Round(time.Millisecond))
	}
	ch := p.clickhouse(t)
	eventually(t, 30*time.Second, "audit why", func() (bool, string) {
		a, err := audit.Why(context.Background(), ch, p.cfg.ClickHouseDatabase, audit.WhyQuery{Email: cs[0].Email})
		if err != nil {
			return false, err.Error()
		}
		return a.Access && a.Entitlement != nil && a.Entitlement.Status == schemas.StatusActive && strings.Contains(a.Text, "active"), a.Text
	})
}

// Payment failure: a failed first payment grants no access; a failed renewal
// fires the dunning tag once only, even with every event re-delivered.
func TestPaymentFailure(t *testing.T) {
	p := thePipeline(t)
	cs := p.population(t, 2, traffic.LifeFailedFirst, traffic.LifePastDue)
	for _, c := range cs {
		c.InCircle, c.InKit = true, true
	}
	dupBefore := p.kit.Stats().DuplicateTags
	p.drive(t, cs, 1.0) // every event twice
	p.converge(t, cs, 60*time.Second)
	failed, pastDue := cs[0], cs[1]
	groups, _, _ := p.planRefs(failed.Plan)
	dunning := p.kitStatusTag(schemas.StatusPastDue)
	eventually(t, 60*time.Second, "dunning tag for "+pastDue.Email, func() (bool, string) {
		s, ok := p.kit.Subscriber(traffic.Variant(pastDue.Email, pastDue.N+2))
		return ok && has(s.Tags, dunning), fmt.Sprintf("%+v", s.Tags)
	})
	time.Sleep(2 * time.Second) // let a second, wrong trigger show itself if there is one
	if m, ok := p.circle.Member(traffic.Variant(failed.Email, failed.N+3)); ok && has(m.AccessGroups, groups[0]) {
		t.Fatalf("failed first payment was granted Circle access: %v", m.AccessGroups)
	}
	if d := p.kit.Stats().DuplicateTags - dupBefore; d != 0 {
		t.Fatalf("%d duplicate tag calls: the dunning trigger fired more than once", d)
	}
}

// Refund: access revoked in Circle, marketing stopped in Kit (refunded tag,
// customer tags gone), and the decision flagged for follow-up.
func TestRefund(t *testing.T) {
	p := thePipeline(t)
	cs := p.population(t, 1, traffic.LifeRefunded)
	c := cs[0]
	c.InCircle, c.InKit = true, true
	p.drive(t, cs, 0)
	p.converge(t, cs, 60*time.Second)
	groups, _, kitTags := p.planRefs(c.Plan)
	refunded := p.kitStatusTag(schemas.StatusRefunded)
	eventually(t, 60*time.Second, "refund pushed downstream", func() (bool, string) {
		m, ok := p.circle.Member(traffic.Variant(c.Email, c.N+3))
		s, ok2 := p.kit.Subscriber(traffic.Variant(c.Email, c.N+2))
		if !ok || !ok2 {
			return false, "member or subscriber missing"
		}
		good := !has(m.AccessGroups, groups[0]) && has(s.Tags, refunded) && !has(s.Tags, kitTags[0])
		return good, fmt.Sprintf("circle groups %v, kit tags %v", m.AccessGroups, s.Tags)
	})
	snap, err := traffic.ReadSnapshot(context.Background(), p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	flagged := false
	for _, e := range snap.Entitlements {
		if e.UserID == c.UserID && e.Status == schemas.StatusRefunded {
			flagged = e.Flagged
		}
	}
	if !flagged {
		t.Fatal("refunded customer's entitlement is not flagged for follow-up")
	}
	// "Why no access?" finds every event the latest decision names in the
	// audit trail (the reconciler names them provider:event id).
	ch := p.clickhouse(t)
	eventually(t, 30*time.Second, "audit why finds the decision's causes", func() (bool, string) {
		a, err := audit.Why(context.Background(), ch, p.cfg.ClickHouseDatabase, audit.WhyQuery{Email: c.Email})
		if err != nil {
			return false, err.Error()
		}
		ok := !a.Access && len(a.CausingIDs) > 0 && len(a.Causes) == len(a.CausingIDs) && !strings.Contains(a.Text, "not in the audit trail")
		return ok, a.Text
	})
}

// Webhook reliability: replaying every provider event a second time creates
// no duplicate tag, subscriber or decision; retries after 5xx from the
// providers leave the state consistent.
func TestReplayAndRetries(t *testing.T) {
	p := thePipeline(t)
	cs := p.population(t, 4, traffic.LifePaid, traffic.LifeRefunded, traffic.LifeCanceled, traffic.LifeEmailChange)
	for _, c := range cs {
		c.InCircle, c.InKit = true, true
	}
	// Kit and Circle answer 5xx to a third of the sink's calls meanwhile.
	p.kit.SetFaults(kitFaults(0.3))
	p.circle.SetFaults(circlesim.Faults{Errors: 0.3})
	p.drive(t, cs, 0.5)
	p.converge(t, cs, 90*time.Second)
	waitQuiet(t, p, 3*time.Second)
	p.kit.SetFaults(kitFaults(0))
	p.circle.SetFaults(circlesim.Faults{})
	waitQuiet(t, p, 3*time.Second)

	ch := p.clickhouse(t)
	// Decisions that change something, and the duplicates the reconciler
	// recognised and recorded as such (counted, never silently dropped).
	decisions := func(kind string) uint64 {
		var n uint64
		ids := make([]string, 0, len(cs))
		for _, c := range cs {
			ids = append(ids, c.UserID)
		}
		q := fmt.Sprintf("SELECT count() FROM (SELECT DISTINCT decision_id FROM decisions WHERE kind %s 'duplicate' AND customer_id IN (SELECT DISTINCT customer_id FROM entitlements WHERE user_id IN ('%s')))",
			kind, strings.Join(ids, "','"))
		if err := ch.QueryRow(context.Background(), q).Scan(&n); err != nil {
			t.Fatalf("count decisions: %v", err)
		}
		return n
	}
	kitBefore, circleBefore, subsBefore := p.kit.Stats(), p.circle.Stats(), len(p.kit.Subscribers())
	decBefore, dupBefore := decisions("!="), decisions("=")
	if decBefore == 0 {
		t.Fatal("no decisions recorded for the population")
	}
	// Replay every Stripe event once more (a provider re-sending everything).
	for _, c := range cs {
		c.InCircle, c.InKit = false, false
	}
	p.drive(t, cs, 0)
	time.Sleep(5 * time.Second)
	waitQuiet(t, p, 3*time.Second)
	kitAfter, circleAfter := p.kit.Stats(), p.circle.Stats()
	if kitAfter.Writes != kitBefore.Writes || circleAfter.Writes != circleBefore.Writes {
		t.Errorf("replay made write calls: kit %d→%d, circle %d→%d", kitBefore.Writes, kitAfter.Writes, circleBefore.Writes, circleAfter.Writes)
	}
	if kitAfter.DuplicateTags != 0 || circleAfter.DuplicateTags != 0 {
		t.Errorf("duplicate tags: kit %d, circle %d", kitAfter.DuplicateTags, circleAfter.DuplicateTags)
	}
	if n := len(p.kit.Subscribers()); n != subsBefore {
		t.Errorf("replay created Kit subscribers: %d → %d", subsBefore, n)
	}
	if after := decisions("!="); after != decBefore {
		t.Errorf("replay created decisions: %d → %d", decBefore, after)
	}
	eventually(t, 30*time.Second, "replayed events recorded as duplicates", func() (bool, string) {
		n := decisions("=")
		return n > dupBefore, fmt.Sprintf("%d duplicate records, %d before the replay", n, dupBefore)
	})
}

func waitQuiet(t *testing.T, p *pipeline, quiet time.Duration) {
	t.Helper()
	last, since := -1, time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		w := p.kit.Stats().Writes + p.circle.Stats().Writes
		if w != last {
			last, since = w, time.Now()
		} else if time.Since(since) >= quiet {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Security: no secret in any log line of the run; the ops routes refuse
// anonymous requests; CORS allows only configured origins; unsigned and
// stale webhooks are refused.
func TestSecurity(t *testing.T) {
	p := thePipeline(t)
	cs := p.population(t, 2, traffic.LifePaid)
	p.drive(t, cs, 0)
	p.converge(t, cs, 60*time.Second)

	do := func(method, path string, body []byte, hdr map[string]string) *http.Response {
		req, _ := http.NewRequest(method, p.base+path, bytes.NewReader(body))
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := do("GET", "/ops/", nil, nil); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous /ops/: %d", r.StatusCode)
	}
	if r := do("GET", "/ops/api/stats", nil, map[string]string{"Authorization": "Bearer wrong-token"}); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("/ops/api/stats with a wrong token: %d", r.StatusCode)
	}
	if r := do("GET", "/ops/api/stats", nil, map[string]string{"Authorization": "Bearer " + p.secrets["LR_OPS_TOKEN"]}); r.StatusCode != http.StatusOK {
		t.Errorf("/ops/api/stats with the token: %d", r.StatusCode)
	}
	good := do("OPTIONS", "/ops/api/stats", nil, map[string]string{"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"})
	if good.Header.Get("Access-Control-Allow-Origin") != "https://app.example.com" {
		t.Errorf("configured origin not allowed: %q", good.Header.Get("Access-Control-Allow-Origin"))
	}
	evil := do("OPTIONS", "/ops/api/stats", nil, map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"})
	if v := evil.Header.Get("Access-Control-Allow-Origin"); v != "" {
		t.Errorf("unconfigured origin allowed: %q", v)
	}

	ev := stripe.InvoicePaid(stripe.Params{CustomerID: "cus_sec" + p.runID, Email: "sec@example.com"})
	secret := p.secrets["LR_STRIPE_WEBHOOK_SECRET"]
	refusedSince := time.Now().Add(-time.Second).Truncate(time.Second)
	for name, sig := range map[string]string{
		"unsigned":      "",
		"wrong secret":  stripe.Sign("whsec_not_the_secret_at_all", ev.Body, time.Now()),
		"stale":         stripe.Sign(secret, ev.Body, time.Now().Add(-time.Hour)),
		"tampered body": stripe.Sign(secret, append([]byte(" "), ev.Body...), time.Now()),
	} {
		hdr := map[string]string{"Content-Type": "application/json"}
		if sig != "" {
			hdr["Stripe-Signature"] = sig
		}
		if r := do("POST", "/webhooks/stripe", ev.Body, hdr); r.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s webhook: %d, want 401", name, r.StatusCode)
		}
	}
	// The refusals reach the audit trail, counted by reason.
	ch := p.clickhouse(t)
	eventually(t, 30*time.Second, "the refused webhooks in audit stats", func() (bool, string) {
		res, err := audit.Stats(context.Background(), ch, p.cfg.ClickHouseDatabase, audit.StatsQuery{Since: refusedSince})
		if err != nil {
			return false, err.Error()
		}
		for _, pr := range res.Providers {
			if pr.Provider == "stripe" {
				got := fmt.Sprint(pr.RejectedByReason)
				return got == "map[missing_signature:1 signature_mismatch:2 stale_timestamp:1]", got
			}
		}
		return false, "no stripe row"
	})

	log, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(log) == 0 {
		t.Fatal("the pipeline wrote no log lines to check")
	}
	for name, v := range p.secrets {
		if bytes.Contains(log, []byte(v)) {
			t.Errorf("%s appears in the pipeline's log", name)
		}
	}
}

// The acceptance run: 50 synthetic users with mixed email case, duplicates
// and out-of-order delivery end exactly as the generator says, with no
// duplicate customer record; the figures are logged (make acceptance).
func TestAcceptance50Users(t *testing.T) {
	p := thePipeline(t)
	cs := p.population(t, 50)
	rep := p.drive(t, cs, 0.15)
	start := time.Now()
	o := p.converge(t, cs, 120*time.Second)
	failRate := 0.0
	if rep.Webhooks > 0 {
		failRate = float64(rep.Failed) / float64(rep.Webhooks)
	}
	t.Logf("acceptance: %d customers, %d customer records, %d duplicate records; %d/%d match the expected state; "+
		"%d webhooks (%d duplicate deliveries), failure rate %.2f%%, webhook p50 %.1f ms p95 %.1f ms; converged %s after traffic",
		o.Customers, o.Identities, o.DuplicateRecords, o.Matched, o.Customers, rep.Webhooks, rep.Duplicates, failRate*100,
		rep.P50MS, rep.P95MS, time.Since(start).Round(time.Millisecond))
	if o.DuplicateRecords != 0 {
		t.Errorf("%d duplicate customer records", o.DuplicateRecords)
	}
	if failRate >= 0.01 {
		t.Errorf("webhook failure rate %.2f%% (target < 1%%)", failRate*100)
	}
	if rep.P95MS >= 500 {
		t.Errorf("webhook p95 %.1f ms (target < 500 ms)", rep.P95MS)
	}
}
