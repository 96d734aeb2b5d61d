// Package traffic generates synthetic customers living realistic lives across
// the app database, Stripe, Kit and Circle, and knows the true final state of
// each one. Drive plays the lives against a running pipeline: signups as SQL
// into the app's users table, signed Stripe webhooks (with provider-like
// duplicates, out-of-order delivery and retries after 5xx), subscribers in the
// Kit simulator (which sends its own signed webhooks) and members in the
// Circle simulator.
package traffic

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/launchready/launchready/schemas"
	"github.com/launchready/launchready/simulate/stripe"
)

// Life is the story of one customer.
type Life string

const (
	LifeLead        Life = "lead"         // signed up, never paid
	LifePaid        Life = "paid"         // paid checkout, subscription active
	LifeFailedFirst Life = "failed_first" // first payment failed: never had access
	LifeRefunded    Life = "refunded"     // paid, then fully refunded
	LifeDisputed    Life = "disputed"     // paid, then a chargeback
	LifeCanceled    Life = "canceled"     // paid, then the subscription ended
	LifePastDue     Life = "past_due"     // paid, then a renewal failed (inside grace)
	LifeEmailChange Life = "email_change" // paid, then changed their email in Stripe
)

// Lives in the mix a generated population follows, with weights.
var mix = []struct {
	life   Life
	weight int
}{
	{LifeLead, 20}, {LifePaid, 30}, {LifeFailedFirst, 8}, {LifeRefunded, 10},
	{LifeDisputed, 5}, {LifeCanceled, 10}, {LifePastDue, 7}, {LifeEmailChange, 10},
}

// Customer is one synthetic person and everything the generator will make
// them do.
type Customer struct {
	N        int
	UserID   string // the app's internal user id
	Email    string // canonical (lower-case) email at signup
	NewEmail string // canonical email after an email change ("" if none)
	Name     string
	Life     Life
	Plan     string // plan name of the price they buy
	PriceID  string
	// Stripe is the customer's Stripe customer id ("" for leads).
	Stripe string
	// InCircle / InKit: whether the person exists in the simulators before
	// the pipeline runs (a lead who joined the community, a newsletter signup).
	InCircle, InKit bool
	// Events are the customer's Stripe events in true order.
	Events []stripe.Event
}

// Expected is the true final state of a customer.
type Expected struct {
	UserID string `json:"user_id"`
	Email  string `json:"email"`
	Status string `json:"status"`
	Access bool   `json:"access"`
	Plan   string `json:"plan,omitempty"`
	Life   Life   `json:"life"`
}

// Expected returns what the pipeline must conclude about c.
func (c *Customer) Expected() Expected {
	e := Expected{UserID: c.UserID, Email: c.Email, Life: c.Life, Status: schemas.StatusNone}
	if c.NewEmail != "" {
		e.Email = c.NewEmail
	}
	switch c.Life {
	case LifePaid, LifeEmailChange:
		e.Status, e.Access, e.Plan = schemas.StatusActive, true, c.Plan
	case LifePastDue:
		e.Status, e.Access, e.Plan = schemas.StatusPastDue, true, c.Plan
	case LifeRefunded:
		e.Status = schemas.StatusRefunded
	case LifeDisputed:
		e.Status = schemas.StatusDisputed
	case LifeCanceled:
		e.Status = schemas.StatusCanceled
	}
	return e
}

// Variant returns the email as one system spells it: providers and people
// differ in case and stray spaces, never in the address itself.
func Variant(email string, which int) string {
	local, domain, _ := strings.Cut(email, "@")
	switch which % 4 {
	case 1:
		return strings.ToUpper(local[:1]) + local[1:] + "@" + strings.ToUpper(domain[:1]) + domain[1:]
	case 2:
		return strings.ToUpper(email)
	case 3:
		return " " + email + " "
	default:
		return email
	}
}

// Population describes what to generate.
type Population struct {
	N    int
	Seed uint64
	// RunID keeps user ids and emails of one run apart from earlier runs on
	// the same database.
	RunID string
	// Now anchors event times; lives unfold over the 40 days before it.
	Now time.Time
	// Prices to buy, by plan name (price id → plan comes from the mapping).
	Prices map[string]string
	// Lives, when set, are cycled through instead of drawing from the mix.
	Lives []Life
}

// Generate makes the population. The same Population gives the same lives,
// ids and event times (event ids are random).
func Generate(p Population) []*Customer {
	rng := rand.New(rand.NewPCG(p.Seed, 0x1a))
	plans := sortedPlans(p.Prices)
	total := 0
	for _, m := range mix {
		total += m.weight
	}
	out := make([]*Customer, 0, p.N)
	for i := 0; i < p.N; i++ {
		life := mix[len(mix)-1].life
		r := rng.IntN(total)
		for _, m := range mix {
			if r < m.weight {
				life = m.life
				break
			}
			r -= m.weight
		}
		if len(p.Lives) > 0 {
			life = p.Lives[i%len(p.Lives)]
		}
		plan := plans[rng.IntN(len(plans))]
		c := &Customer{
			N:        i,
			UserID:   fmt.Sprintf("%s%05d", p.RunID, i),
			Email:    fmt.Sprintf("user%05d.%s@example.com", i, strings.ToLower(p.RunID)),
			Name:     fmt.Sprintf("User %d", i),
			Life:     life,
			Plan:     plan,
			PriceID:  p.Prices[plan],
			InCircle: rng.IntN(2) == 0,
			InKit:    life == LifeLead || rng.IntN(3) > 0,
		}
		if life != LifeLead {
			c.Stripe = "cus_" + strings.ToUpper(p.RunID) + fmt.Sprintf("%05d", i)
		}
		c.Events = c.story(p.Now, rng)
		out = append(out, c)
	}
	return out
}

func sortedPlans(prices map[string]string) []string {
	var plans []string
	for p := range prices {
		plans = append(plans, p)
	}
	// Deterministic order for a seeded population.
	for i := 1; i < len(plans); i++ {
		for j := i; j > 0 && plans[j] < plans[j-1]; j-- {
			plans[j], plans[j-1] = plans[j-1], plans[j]
		}
	}
	return plans
}

// story builds the customer's Stripe events in true order, as Stripe would
// emit them for that life.
func (c *Customer) story(now time.Time, rng *rand.Rand) []stripe.Event {
	if c.Life == LifeLead {
		return nil
	}
	// Lives start 20 to 27 days ago, so the first billing period is still
	// running; a past-due customer's first period ended two hours ago and its
	// renewal failed then.
	start := now.Add(-time.Duration(20+rng.IntN(8)) * 24 * time.Hour).Truncate(time.Second)
	if c.Life == LifePastDue {
		start = now.Add(-30*24*time.Hour - 2*time.Hour).Truncate(time.Second)
	}
	base := stripe.Params{
		CustomerID: c.Stripe, Email: Variant(c.Email, c.N+1), Name: c.Name, UserID: c.UserID,
		SubscriptionID: "sub_" + c.Stripe[4:], PriceID: c.PriceID,
		InvoiceID: "in_" + c.Stripe[4:] + "a", ChargeID: "ch_" + c.Stripe[4:] + "a",
	}
	at := func(d time.Duration, mod func(*stripe.Params)) stripe.Params {
		p := base
		p.Created = start.Add(d)
		p.PeriodEnd = start.Add(30 * 24 * time.Hour)
		if mod != nil {
			mod(&p)
		}
		return p
	}
	var evs []stripe.Event
	if c.Life == LifeFailedFirst {
		evs = append(evs,
			stripe.SubscriptionCreated(at(0, func(p *stripe.Params) { p.Status = "incomplete" })),
			firstPayment(stripe.InvoicePaymentFailed(at(time.Second, nil))),
		)
		return evs
	}
	evs = append(evs,
		stripe.CheckoutSessionCompleted(at(0, nil)),
		stripe.SubscriptionCreated(at(time.Second, func(p *stripe.Params) { p.Status = "active" })),
		firstPayment(stripe.InvoicePaid(at(2*time.Second, nil))),
		chargeSucceeded(at(2*time.Second, nil)),
	)
	switch c.Life {
	case LifePaid:
		evs = append(evs, stripe.SubscriptionUpdated(at(2*24*time.Hour, func(p *stripe.Params) { p.Status, p.PreviousStatus = "active", "active" })))
	case LifeRefunded:
		evs = append(evs, stripe.ChargeRefunded(at(3*24*time.Hour, nil)))
	case LifeDisputed:
		evs = append(evs, stripe.ChargeDisputeCreated(at(5*24*time.Hour, nil)))
	case LifeCanceled:
		evs = append(evs,
			stripe.SubscriptionUpdated(at(10*24*time.Hour, func(p *stripe.Params) { p.Status, p.PreviousStatus = "active", "active" })),
			stripe.SubscriptionDeleted(at(15*24*time.Hour, func(p *stripe.Params) { p.Status = "canceled" })),
		)
	case LifePastDue:
		// The renewal failed two hours ago: inside the grace period.
		renewal := 30 * 24 * time.Hour
		next := func(p *stripe.Params) {
			p.InvoiceID, p.ChargeID, p.PeriodEnd = base.InvoiceID+"b", base.ChargeID+"b", start.Add(60*24*time.Hour)
		}
		evs = append(evs,
			stripe.InvoicePaymentFailed(at(renewal, next)),
			stripe.SubscriptionUpdated(at(renewal+time.Second, func(p *stripe.Params) {
				next(p)
				p.Status, p.PreviousStatus = "past_due", "active"
			})),
		)
	case LifeEmailChange:
		c.NewEmail = "new." + c.Email
		evs = append(evs, stripe.CustomerUpdated(at(7*24*time.Hour, func(p *stripe.Params) {
			p.Email, p.PreviousEmail = Variant(c.NewEmail, c.N), base.Email
		})))
	}
	return evs
}

// chargeSucceeded is the charge of a paid invoice, as Stripe announces it.
// It ties the charge id to the customer: a dispute names only the charge.
func chargeSucceeded(p stripe.Params) stripe.Event {
	o := stripe.Object("charge")
	o["id"] = p.ChargeID
	o["customer"] = p.CustomerID
	o["amount"], o["amount_captured"], o["amount_refunded"] = 4900, 4900, 0
	o["currency"] = "usd"
	o["paid"], o["captured"], o["refunded"], o["disputed"] = true, true, false, false
	o["status"] = "succeeded"
	o["receipt_email"] = p.Email
	// The fixture's own ids would tie every customer's charge together.
	o["payment_intent"] = "pi_" + strings.TrimPrefix(p.ChargeID, "ch_")
	o["invoice"] = p.InvoiceID
	for _, k := range []string{"balance_transaction", "payment_method", "source", "transfer", "review", "application", "on_behalf_of"} {
		if _, ok := o[k]; ok {
			o[k] = nil
		}
	}
	o["created"] = p.Created.Unix()
	if bd, ok := o["billing_details"].(map[string]any); ok {
		bd["email"] = p.Email
	}
	return stripe.NewEvent("charge.succeeded", o, nil, "", p.Created, stripe.DefaultAPIVersion)
}

// firstPayment marks an invoice event as the subscription's first invoice
// (billing_reason subscription_create), which decides whether a failure
// withholds access (first payment) or starts a grace period (renewal).
func firstPayment(e stripe.Event) stripe.Event {
	var env map[string]any
	if err := json.Unmarshal(e.Body, &env); err != nil {
		return e
	}
	if data, ok := env["data"].(map[string]any); ok {
		if obj, ok := data["object"].(map[string]any); ok {
			obj["billing_reason"] = "subscription_create"
		}
	}
	if b, err := json.Marshal(env); err == nil {
		e.Body = b
	}
	return e
}
