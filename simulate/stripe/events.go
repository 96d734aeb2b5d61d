package stripe

import (
	"strconv"
	"strings"
	"time"
)

// Params describe the customer and purchase an event is about. Zero fields
// get realistic defaults (fresh ids, a monthly 49.00 USD plan).
type Params struct {
	EventID    string
	Created    time.Time // event creation time; default now
	APIVersion string    // default DefaultAPIVersion; before 2025-03-31 the pre-basil shapes are used

	CustomerID string
	Email      string
	Name       string
	UserID     string // the app's own user id: client_reference_id and metadata.user_id

	SubscriptionID string
	PriceID        string
	ProductID      string
	InvoiceID      string
	ChargeID       string
	Amount         int64  // minor units; default 4900
	Currency       string // default usd

	// Status of the subscription in subscription events; PreviousStatus, when
	// set, goes to previous_attributes.status.
	Status         string
	PreviousStatus string
	// PeriodEnd of the current billing period; default Created + 30 days.
	PeriodEnd time.Time
	// PreviousEmail, for customer.updated, goes to previous_attributes.email.
	PreviousEmail string
}

func (p *Params) defaults() {
	if p.Created.IsZero() {
		p.Created = time.Now()
	}
	if p.CustomerID == "" {
		p.CustomerID = NewID("cus")
	}
	if p.Email == "" {
		p.Email = strings.ToLower(strings.TrimPrefix(p.CustomerID, "cus_")) + "@example.org"
	}
	if p.Name == "" {
		p.Name = "Test Customer"
	}
	if p.SubscriptionID == "" {
		p.SubscriptionID = NewID("sub")
	}
	if p.PriceID == "" {
		p.PriceID = "price_pro_monthly"
	}
	if p.ProductID == "" {
		p.ProductID = "prod_pro"
	}
	if p.InvoiceID == "" {
		p.InvoiceID = NewID("in")
	}
	if p.ChargeID == "" {
		p.ChargeID = NewID("ch")
	}
	if p.Amount == 0 {
		p.Amount = 4900
	}
	if p.Currency == "" {
		p.Currency = "usd"
	}
	if p.APIVersion == "" {
		p.APIVersion = DefaultAPIVersion
	}
	if p.PeriodEnd.IsZero() {
		p.PeriodEnd = p.Created.Add(30 * 24 * time.Hour)
	}
}

// basil reports whether the API version has the 2025-03-31 ("basil") shapes.
func (p *Params) basil() bool { return p.APIVersion >= "2025-03-31" }

func (p *Params) metadata() map[string]any {
	if p.UserID == "" {
		return map[string]any{}
	}
	return map[string]any{"user_id": p.UserID}
}

func (p *Params) event(typ string, object, previous map[string]any) Event {
	return NewEvent(typ, object, previous, p.EventID, p.Created, p.APIVersion)
}

// CheckoutSessionCompleted is a paid subscription checkout.
func CheckoutSessionCompleted(p Params) Event {
	p.defaults()
	o := Object("checkout.session")
	o["id"] = NewID("cs_test")
	o["mode"] = "subscription"
	o["status"] = "complete"
	o["payment_status"] = "paid"
	o["customer"] = p.CustomerID
	o["customer_email"] = nil
	if cd, ok := o["customer_details"].(map[string]any); ok {
		cd["email"] = p.Email
		cd["name"] = p.Name
	}
	if p.UserID != "" {
		o["client_reference_id"] = p.UserID
	}
	o["metadata"] = p.metadata()
	o["subscription"] = p.SubscriptionID
	o["invoice"] = p.InvoiceID
	o["payment_intent"] = nil
	o["amount_subtotal"] = p.Amount
	o["amount_total"] = p.Amount
	o["currency"] = p.Currency
	o["created"] = p.Created.Add(-time.Minute).Unix()
	o["expires_at"] = p.Created.Add(23 * time.Hour).Unix()
	return p.event("checkout.session.completed", o, nil)
}

func (p *Params) invoice(status string, paid bool) map[string]any {
	o := Object("invoice")
	o["id"] = p.InvoiceID
	o["customer"] = p.CustomerID
	o["customer_email"] = p.Email
	o["customer_name"] = p.Name
	o["status"] = status
	o["billing_reason"] = "subscription_cycle"
	o["currency"] = p.Currency
	o["amount_due"] = p.Amount
	o["subtotal"] = p.Amount
	o["subtotal_excluding_tax"] = p.Amount
	o["total"] = p.Amount
	o["total_excluding_tax"] = p.Amount
	o["amount_overpaid"] = 0
	o["attempted"] = true
	o["attempt_count"] = 1
	if paid {
		o["amount_paid"] = p.Amount
		o["amount_remaining"] = 0
		o["next_payment_attempt"] = nil
	} else {
		o["amount_paid"] = 0
		o["amount_remaining"] = p.Amount
		o["next_payment_attempt"] = p.Created.Add(72 * time.Hour).Unix()
	}
	o["created"] = p.Created.Add(-time.Hour).Unix()
	o["period_start"] = p.Created.Add(-30 * 24 * time.Hour).Unix()
	o["period_end"] = p.Created.Unix()
	o["metadata"] = map[string]any{}
	if p.basil() {
		delete(o, "subscription")
		o["parent"] = map[string]any{
			"type":          "subscription_details",
			"quote_details": nil,
			"subscription_details": map[string]any{
				"metadata":     p.metadata(),
				"subscription": p.SubscriptionID,
			},
		}
	} else {
		o["subscription"] = p.SubscriptionID
		delete(o, "parent")
	}
	if lines, ok := o["lines"].(map[string]any); ok {
		if data, ok := lines["data"].([]any); ok && len(data) > 0 {
			if l, ok := data[0].(map[string]any); ok {
				l["amount"] = p.Amount
				l["subtotal"] = p.Amount
				l["invoice"] = p.InvoiceID
				l["period"] = map[string]any{"start": p.Created.Unix(), "end": p.PeriodEnd.Unix()}
				l["pricing"] = map[string]any{
					"type":                "price_details",
					"price_details":       map[string]any{"price": p.PriceID, "product": p.ProductID},
					"unit_amount_decimal": strconv.FormatInt(p.Amount, 10),
				}
				l["parent"] = map[string]any{
					"type":                      "subscription_item_details",
					"invoice_item_details":      nil,
					"subscription_item_details": map[string]any{"subscription": p.SubscriptionID, "subscription_item": "si_" + strings.TrimPrefix(p.SubscriptionID, "sub_"), "proration": false, "proration_details": map[string]any{"credited_items": nil}, "invoice_item": nil},
				}
				l["description"] = "1 × Pro"
			}
		}
		lines["url"] = "/v1/invoices/" + p.InvoiceID + "/lines"
	}
	return o
}

// InvoicePaid is a subscription renewal that was paid.
func InvoicePaid(p Params) Event {
	p.defaults()
	return p.event("invoice.paid", p.invoice("paid", true), nil)
}

// InvoicePaymentFailed is a renewal whose charge failed (the subscription
// usually turns past_due).
func InvoicePaymentFailed(p Params) Event {
	p.defaults()
	return p.event("invoice.payment_failed", p.invoice("open", false), nil)
}

func (p *Params) charge(refunded bool) map[string]any {
	o := Object("charge")
	o["id"] = p.ChargeID
	o["customer"] = p.CustomerID
	o["amount"] = p.Amount
	o["amount_captured"] = p.Amount
	o["captured"] = true
	o["currency"] = p.Currency
	o["receipt_email"] = p.Email
	o["payment_intent"] = NewID("pi")
	o["description"] = "Subscription update"
	o["created"] = p.Created.Add(-24 * time.Hour).Unix()
	o["metadata"] = map[string]any{}
	if bd, ok := o["billing_details"].(map[string]any); ok {
		bd["email"] = p.Email
		bd["name"] = p.Name
	}
	if refunded {
		o["amount_refunded"] = p.Amount
		o["refunded"] = true
	}
	return o
}

// ChargeRefunded is a full refund of a charge.
func ChargeRefunded(p Params) Event {
	p.defaults()
	return p.event("charge.refunded", p.charge(true), map[string]any{"amount_refunded": 0, "refunded": false})
}

// ChargeDisputeCreated is a dispute opened on a charge. A dispute names the
// charge, not the customer.
func ChargeDisputeCreated(p Params) Event {
	p.defaults()
	o := Object("dispute")
	o["id"] = NewID("dp")
	o["charge"] = p.ChargeID
	o["amount"] = p.Amount
	o["currency"] = p.Currency
	o["reason"] = "fraudulent"
	o["status"] = "needs_response"
	o["payment_intent"] = NewID("pi")
	o["created"] = p.Created.Unix()
	o["metadata"] = map[string]any{}
	return p.event("charge.dispute.created", o, nil)
}

func (p *Params) subscription(status string) map[string]any {
	o := Object("subscription")
	o["id"] = p.SubscriptionID
	o["customer"] = p.CustomerID
	o["status"] = status
	o["currency"] = p.Currency
	o["metadata"] = p.metadata()
	start := p.PeriodEnd.Add(-30 * 24 * time.Hour).Unix()
	o["created"] = start
	o["start_date"] = start
	o["billing_cycle_anchor"] = start
	o["trial_start"], o["trial_end"] = nil, nil
	o["cancel_at"], o["canceled_at"], o["ended_at"] = nil, nil, nil
	o["cancel_at_period_end"] = false
	o["latest_invoice"] = p.InvoiceID
	o["next_pending_invoice_item_invoice"] = nil
	if items, ok := o["items"].(map[string]any); ok {
		if data, ok := items["data"].([]any); ok && len(data) > 0 {
			if it, ok := data[0].(map[string]any); ok {
				it["id"] = "si_" + strings.TrimPrefix(p.SubscriptionID, "sub_")
				it["subscription"] = p.SubscriptionID
				it["created"] = start
				if pr, ok := it["price"].(map[string]any); ok {
					pr["id"] = p.PriceID
					pr["product"] = p.ProductID
					pr["unit_amount"] = p.Amount
					pr["unit_amount_decimal"] = strconv.FormatInt(p.Amount, 10)
				}
				if pl, ok := it["plan"].(map[string]any); ok {
					pl["id"] = p.PriceID
					pl["product"] = p.ProductID
					pl["amount"] = p.Amount
					pl["interval_count"] = 1
					pl["billing_scheme"] = "per_unit"
				}
				if p.basil() {
					it["current_period_start"] = start
					it["current_period_end"] = p.PeriodEnd.Unix()
				} else {
					delete(it, "current_period_start")
					delete(it, "current_period_end")
				}
			}
		}
		items["url"] = "/v1/subscription_items?subscription=" + p.SubscriptionID
	}
	if !p.basil() {
		o["current_period_start"] = start
		o["current_period_end"] = p.PeriodEnd.Unix()
	}
	return o
}

// SubscriptionCreated is a new subscription (status default active).
func SubscriptionCreated(p Params) Event {
	p.defaults()
	st := p.Status
	if st == "" {
		st = "active"
	}
	return p.event("customer.subscription.created", p.subscription(st), nil)
}

// SubscriptionUpdated is a subscription change; Status (default active) is
// the new status and PreviousStatus, when set, the old one.
func SubscriptionUpdated(p Params) Event {
	p.defaults()
	st := p.Status
	if st == "" {
		st = "active"
	}
	var prev map[string]any
	if p.PreviousStatus != "" {
		prev = map[string]any{"status": p.PreviousStatus}
	}
	return p.event("customer.subscription.updated", p.subscription(st), prev)
}

// SubscriptionDeleted is a subscription that ended (status canceled).
func SubscriptionDeleted(p Params) Event {
	p.defaults()
	o := p.subscription("canceled")
	o["canceled_at"] = p.Created.Unix()
	o["ended_at"] = p.Created.Unix()
	return p.event("customer.subscription.deleted", o, nil)
}

func (p *Params) customer() map[string]any {
	o := Object("customer")
	o["id"] = p.CustomerID
	o["email"] = p.Email
	o["name"] = p.Name
	o["metadata"] = p.metadata()
	o["created"] = p.Created.Add(-48 * time.Hour).Unix()
	o["discount"] = nil
	return o
}

// CustomerCreated is a new customer.
func CustomerCreated(p Params) Event {
	p.defaults()
	return p.event("customer.created", p.customer(), nil)
}

// CustomerUpdated is a customer change; with PreviousEmail set it is an email
// change (previous_attributes.email).
func CustomerUpdated(p Params) Event {
	p.defaults()
	var prev map[string]any
	if p.PreviousEmail != "" {
		prev = map[string]any{"email": p.PreviousEmail}
	}
	return p.event("customer.updated", p.customer(), prev)
}

// Builders maps every event type this package builds to its builder, for
// generators that pick types at random.
var Builders = map[string]func(Params) Event{
	"checkout.session.completed":    CheckoutSessionCompleted,
	"invoice.paid":                  InvoicePaid,
	"invoice.payment_failed":        InvoicePaymentFailed,
	"charge.refunded":               ChargeRefunded,
	"charge.dispute.created":        ChargeDisputeCreated,
	"customer.subscription.created": SubscriptionCreated,
	"customer.subscription.updated": SubscriptionUpdated,
	"customer.subscription.deleted": SubscriptionDeleted,
	"customer.created":              CustomerCreated,
	"customer.updated":              CustomerUpdated,
}
