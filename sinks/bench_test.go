package sinks_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/mapping"
	"github.com/launchready/launchready/schemas"
	circlesim "github.com/launchready/launchready/simulate/circle"
	"github.com/launchready/launchready/sinks"
	"github.com/launchready/launchready/sinks/circle"
	"github.com/launchready/launchready/sinks/kit"
)

// speedup shrinks the providers' windows in the benchmarks: the simulators
// and the client limiters run at 5× the real request rate, with Kit's real
// count per window (120 per 12 s instead of 60 s) and Circle's count scaled
// to the same rate (200 per 6 s for 2,000 per 5 min). Figures are reported
// at the real rate.
const speedup = 5

// BenchmarkSinkKit syncs a backlog of 120 customers into Kit: half new
// paying customers, a quarter refunded, a quarter already in sync.
func BenchmarkSinkKit(b *testing.B) {
	benchSink(b, schemas.ProviderKit, 120, rigOptions{kitLimit: kit.RateLimit, kitWindow: kit.RateWindow / speedup, arrivals: true, productionMargin: true})
}

// BenchmarkSinkCircle syncs the same backlog into Circle.
func BenchmarkSinkCircle(b *testing.B) {
	n := 200
	w := time.Duration(float64(circle.RateWindow) * float64(n) / float64(circle.RateLimit) / speedup)
	benchSink(b, schemas.ProviderCircle, 120, rigOptions{circleLimit: n, circleWindow: w, arrivals: true, productionMargin: true})
}

func benchSink(b *testing.B, provider string, n int, o rigOptions) {
	var perMin, used, perField, perCustomer, violations float64
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r := newRig(b, o)
		es := backlog(b, r, n)
		r.publish(es...)
		var p sinks.Provider
		for _, x := range r.providers() {
			if x.Name() == provider {
				p = x
			}
		}
		st := r.stageOf(sinks.Options{Concurrency: 4}, p)
		b.StartTimer()
		stop := r.run(st)
		r.waitSynced(st, int64(n), 5*time.Minute)
		b.StopTimer()
		if err := stop(); err != nil {
			b.Fatal(err)
		}
		if p := only(r.problems(es...), provider); len(p) > 0 {
			b.Fatalf("not converged: %v", p)
		}
		ws := st.Workers()[0].Stats()
		limit, window, arrived := o.kitLimit, o.kitWindow, r.kitArrived
		writes, viol := r.kit.Stats().Writes, r.kit.Stats().Violations
		if provider == schemas.ProviderCircle {
			limit, window, arrived = o.circleLimit, o.circleWindow, r.cirArrived
			writes, viol = r.circle.Stats().Writes, r.circle.Stats().Violations
		}
		// Customers a minute at the real limit, in steady state: the rate
		// the limit allows, times the share used, over requests per customer.
		used = steadyUse(arrived, limit, window)
		perMin = time.Minute.Seconds() * float64(limit) / (window * speedup).Seconds() * used / 100 / (float64(len(arrived)) / float64(n))
		perField = float64(writes) / float64(ws.Changes)
		perCustomer = float64(writes) / float64(ws.Changed)
		violations = float64(viol)
	}
	b.ReportMetric(perMin, "customers/min")
	b.ReportMetric(used, "%budget_used")
	b.ReportMetric(perField, "writes/changed_field")
	b.ReportMetric(perCustomer, "writes/changed_customer")
	b.ReportMetric(violations, "violations")
}

// steadyUse is the share of the rate limit used: a sliding window of limit
// per window lets request j arrive no earlier than window after request
// j−limit, so a client that uses the whole budget keeps every such gap at
// window. It is 100 × window / the mean gap, over every request after the
// first limit (which the window admits at once).
func steadyUse(arrived []time.Time, limit int, window time.Duration) float64 {
	if len(arrived) <= limit {
		return 0
	}
	ts := append([]time.Time(nil), arrived...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	var gaps time.Duration
	for j := limit; j < len(ts); j++ {
		gaps += ts[j].Sub(ts[j-limit])
	}
	return 100 * float64(window) * float64(len(ts)-limit) / float64(gaps)
}

// backlog returns n entitlements: half new paying customers the providers
// do not know, a quarter paying customers now refunded, a quarter already
// in sync (both seeded into the simulators).
func backlog(b *testing.B, r *rig, n int) []*schemas.Entitlement {
	ps := r.providers()
	var es []*schemas.Entitlement
	for i := range n {
		plan := []string{"pro", "starter"}[i%2]
		e := entitlement(fmt.Sprintf("cus_b%04d", i), fmt.Sprintf("b%04d@example.org", i), plan, schemas.StatusActive, true)
		switch i % 4 {
		case 1:
			seed(b, r, ps, e)
			e = entitlement(e.CustomerID, e.Email, plan, schemas.StatusRefunded, false)
			e.Version = 2
		case 3:
			seed(b, r, ps, e)
		}
		es = append(es, e)
	}
	return es
}

func entitlement(customer, email, plan, status string, access bool) *schemas.Entitlement {
	end := time.Date(2026, 4, 2, 0, 0, 0, 0, time.UTC)
	return &schemas.Entitlement{V: 1, CustomerID: customer, Email: email, Plan: plan, Status: status, Access: access, CurrentPeriodEnd: &end, Version: 1, UpdatedAt: time.Now().UTC()}
}

// seed makes both simulators hold what the mapping wants for e.
func seed(b *testing.B, r *rig, ps []sinks.Provider, e *schemas.Entitlement) {
	d := r.m.Desired(e, time.Now())
	kt := ps[0].Target(d, e)
	if _, err := r.kit.AddSubscriber(e.Email, "", ids(kt.Tags), kt.Fields); err != nil {
		b.Fatal(err)
	}
	ct := ps[1].Target(d, e)
	if _, err := r.circle.AddMember(circlesim.MemberSeed{Email: e.Email, Tags: ids(ct.Tags), AccessGroups: ids(ct.Groups), Fields: ct.Fields}); err != nil {
		b.Fatal(err)
	}
}

func ids(refs []mapping.Ref) []int64 {
	out := make([]int64, len(refs))
	for i, r := range refs {
		out[i] = r.ID
	}
	return out
}

// only keeps the problems of one provider.
func only(ps []string, provider string) []string {
	var out []string
	for _, p := range ps {
		if strings.HasPrefix(p, provider+" ") {
			out = append(out, p)
		}
	}
	return out
}
