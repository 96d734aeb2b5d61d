package reconcile

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/launchready/launchready/schemas"
)

// stripeEvent is the Stripe event envelope with data.object decoded into the
// union of the object fields the reconciler reads, so a body is scanned once.
type stripeEvent struct {
	ID         string `json:"id"`
	Object     string `json:"object"`
	Type       string `json:"type"`
	Created    int64  `json:"created"`
	APIVersion string `json:"api_version"`
	Data       struct {
		Object   stripeObject `json:"object"`
		Previous struct {
			Email *string `json:"email"`
		} `json:"previous_attributes"`
	} `json:"data"`
}

// stripeObject holds the fields of customers, subscriptions, invoices,
// checkout sessions, charges, disputes, refunds and payment intents that the
// reconciler reads. Fields whose shape changed between API versions are read
// in every place they have lived.
type stripeObject struct {
	ID       string  `json:"id"`
	Object   string  `json:"object"`
	Customer idOrObj `json:"customer"`
	Status   string  `json:"status"`
	Email    *string `json:"email"`
	Metadata meta    `json:"metadata"`

	// subscription
	Items struct {
		Data []stripeItem `json:"data"`
	} `json:"items"`
	CurrentPeriodEnd int64 `json:"current_period_end"` // before 2025-03-31

	// invoice
	CustomerEmail *string `json:"customer_email"`
	BillingReason string  `json:"billing_reason"`
	Subscription  idOrObj `json:"subscription"` // invoice (before basil), checkout session
	Parent        struct {
		SubscriptionDetails struct {
			Subscription idOrObj `json:"subscription"`
		} `json:"subscription_details"`
	} `json:"parent"`
	Lines struct {
		Data []stripeLine `json:"data"`
	} `json:"lines"`
	Payments struct {
		Data []struct {
			Payment struct {
				Charge        idOrObj `json:"charge"`
				PaymentIntent idOrObj `json:"payment_intent"`
			} `json:"payment"`
		} `json:"data"`
	} `json:"payments"`
	AmountPaid int64 `json:"amount_paid"`

	// checkout session
	ClientReferenceID *string `json:"client_reference_id"`
	CustomerDetails   struct {
		Email *string `json:"email"`
	} `json:"customer_details"`
	Mode          string `json:"mode"`
	PaymentStatus string `json:"payment_status"`
	LineItems     struct {
		Data []stripeItem `json:"data"`
	} `json:"line_items"`

	// charge, dispute, refund, payment intent
	Amount         int64   `json:"amount"`
	AmountRefunded int64   `json:"amount_refunded"`
	Refunded       bool    `json:"refunded"`
	Charge         idOrObj `json:"charge"`
	PaymentIntent  idOrObj `json:"payment_intent"`
	BillingDetails struct {
		Email *string `json:"email"`
	} `json:"billing_details"`
	ReceiptEmail *string `json:"receipt_email"`
}

type stripePrice struct {
	ID      string  `json:"id"`
	Product idOrObj `json:"product"`
}

type stripeItem struct {
	Price            stripePrice `json:"price"`
	Plan             stripePrice `json:"plan"` // legacy plans
	CurrentPeriodEnd int64       `json:"current_period_end"`
}

type stripeLine struct {
	Price   stripePrice `json:"price"` // before basil
	Pricing struct {
		PriceDetails struct {
			Price   idOrObj `json:"price"`
			Product idOrObj `json:"product"`
		} `json:"price_details"`
	} `json:"pricing"`
	Period struct {
		End int64 `json:"end"`
	} `json:"period"`
	Subscription idOrObj `json:"subscription"`
	Parent       struct {
		SubscriptionItemDetails struct {
			Subscription idOrObj `json:"subscription"`
		} `json:"subscription_item_details"`
	} `json:"parent"`
}

// idOrObj reads a Stripe reference that is an id, null, or an expanded object.
type idOrObj string

func (s *idOrObj) UnmarshalJSON(b []byte) error {
	*s = ""
	if len(b) == 0 {
		return nil
	}
	switch b[0] {
	case '"':
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = idOrObj(v)
	case '{':
		var v struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		*s = idOrObj(v.ID)
	}
	return nil
}

// meta reads Stripe metadata: string values, anything else rendered as text.
type meta map[string]string

func (m *meta) UnmarshalJSON(b []byte) error {
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*m = nil
	if len(raw) == 0 {
		return nil
	}
	out := make(meta, len(raw))
	for k, v := range raw {
		switch x := v.(type) {
		case string:
			out[k] = x
		case nil:
		default:
			out[k] = fmt.Sprint(x)
		}
	}
	*m = out
	return nil
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// userIDKeys are the metadata keys an app commonly stores its user id under.
var userIDKeys = []string{"user_id", "userId", "app_user_id"}

func (m meta) userID() string {
	for _, k := range userIDKeys {
		if v := m[k]; v != "" {
			return v
		}
	}
	return ""
}

func (m meta) planHint() string {
	for _, k := range []string{"plan", "price", "price_id", "product", "product_id"} {
		if v := m[k]; v != "" {
			return v
		}
	}
	return ""
}

// DecodeStripe turns a raw Stripe event into a Fact. It returns nil (and no
// error) for events that carry nothing the reconciler uses.
func DecodeStripe(raw *schemas.RawEvent) (*Fact, error) {
	var ev stripeEvent
	if err := json.Unmarshal(raw.Body, &ev); err != nil {
		return nil, fmt.Errorf("stripe event %s: %w", raw.EventID, err)
	}
	return factFromStripe(raw, &ev)
}

// rawEnvelope is schemas.RawEvent with the body decoded as B in the same
// pass: the loop reads each record's JSON once.
type rawEnvelope[B any] struct {
	V            int       `json:"v"`
	Provider     string    `json:"provider"`
	EventID      string    `json:"event_id"`
	Type         string    `json:"type"`
	ObjectID     string    `json:"object_id"`
	ProviderTime time.Time `json:"provider_time"`
	ReceivedAt   time.Time `json:"received_at"`
	Duplicate    bool      `json:"duplicate"`
	Body         B         `json:"body"`
}

func (e *rawEnvelope[B]) raw() *schemas.RawEvent {
	return &schemas.RawEvent{V: e.V, Provider: e.Provider, EventID: e.EventID, Type: e.Type, ObjectID: e.ObjectID,
		ProviderTime: e.ProviderTime, ReceivedAt: e.ReceivedAt, Duplicate: e.Duplicate}
}

// decodeRecord decodes a raw-topic record of provider in one pass and turns
// it into a Fact. Stripe records, the bulk of the load, go through the
// walker (stripewalk.go); decodeRecordStd is the reference it must match.
func decodeRecord(provider string, value []byte) (f *Fact, dup bool, err error) {
	if provider == schemas.ProviderStripe {
		return decodeStripeRecord(value)
	}
	return decodeRecordStd(provider, value)
}

// decodeRecordStd decodes a raw-topic record with encoding/json.
func decodeRecordStd(provider string, value []byte) (f *Fact, dup bool, err error) {
	check := func(v int, p string) error {
		if v > schemas.RawVersion {
			return fmt.Errorf("raw event version %d is newer than %d", v, schemas.RawVersion)
		}
		if p != provider {
			return fmt.Errorf("a %q event on the %s topic", p, provider)
		}
		return nil
	}
	switch provider {
	case schemas.ProviderStripe:
		var e rawEnvelope[stripeEvent]
		if err := json.Unmarshal(value, &e); err != nil {
			return nil, false, fmt.Errorf("stripe record: %w", err)
		}
		if err := check(e.V, e.Provider); err != nil {
			return nil, false, err
		}
		f, err = factFromStripe(e.raw(), &e.Body)
		return f, e.Duplicate, err
	case schemas.ProviderKit:
		var e rawEnvelope[kitBody]
		if err := json.Unmarshal(value, &e); err != nil {
			return nil, false, fmt.Errorf("kit record: %w", err)
		}
		if err := check(e.V, e.Provider); err != nil {
			return nil, false, err
		}
		return factFromKit(e.raw(), &e.Body), e.Duplicate, nil
	case schemas.ProviderCircle:
		var e rawEnvelope[circleMember]
		if err := json.Unmarshal(value, &e); err != nil {
			return nil, false, fmt.Errorf("circle record: %w", err)
		}
		if err := check(e.V, e.Provider); err != nil {
			return nil, false, err
		}
		return factFromCircle(e.raw(), &e.Body), e.Duplicate, nil
	}
	return nil, false, fmt.Errorf("unknown provider %q", provider)
}

func factFromStripe(raw *schemas.RawEvent, ev *stripeEvent) (*Fact, error) {
	if ev.ID == "" && raw.EventID == "" {
		return nil, fmt.Errorf("stripe event without id")
	}
	f := &Fact{Key: raw.DedupKey(), Source: SourceStripe, Type: ev.Type, EventID: ev.ID, Received: raw.ReceivedAt}
	if f.EventID == "" {
		f.EventID = raw.EventID
	}
	if f.Type == "" {
		f.Type = raw.Type
	}
	f.At = raw.ProviderTime
	if ev.Created > 0 {
		f.At = time.Unix(ev.Created, 0).UTC()
	}
	o := &ev.Data.Object
	cus := MakeID(KindStripe, string(o.Customer))
	f.addLink(cus)
	f.addLink(MakeID(KindUser, o.Metadata.userID()))
	// claim records an email as the current address of the Stripe customer
	// (or of nobody yet, for a guest checkout).
	claim := func(raw string, rank int) {
		e := f.addEmail(raw)
		if e == "" || f.Email != nil {
			return
		}
		of := cus
		if of == "" {
			of = MakeID(KindEmail, e)
		}
		f.Email = &EmailClaim{Of: of, Email: e, Rank: rank}
	}
	switch o.Object {
	case "customer":
		cus = MakeID(KindStripe, o.ID)
		f.addLink(cus)
		if f.Type != "customer.deleted" {
			claim(str(o.Email), RankStripeCustomer)
		}
		if prev := ev.Data.Previous.Email; prev != nil {
			if p := f.addEmail(*prev); p != "" && f.Email != nil && p != f.Email.Email {
				f.PrevEmail = p
			}
		}
	case "subscription":
		f.Billing = subscriptionBilling(o)
	case "invoice":
		claim(str(o.CustomerEmail), RankStripe)
		f.addLink(MakeID(KindCharge, string(o.Charge)))
		f.addLink(MakeID(KindPayment, string(o.PaymentIntent)))
		for _, p := range o.Payments.Data {
			f.addLink(MakeID(KindCharge, string(p.Payment.Charge)))
			f.addLink(MakeID(KindPayment, string(p.Payment.PaymentIntent)))
		}
		f.Billing = invoiceBilling(ev.Type, o)
	case "checkout.session":
		f.addLink(MakeID(KindUser, str(o.ClientReferenceID)))
		claim(str(o.CustomerDetails.Email), RankStripe)
		claim(str(o.CustomerEmail), RankStripe)
		f.addLink(MakeID(KindPayment, string(o.PaymentIntent)))
		f.Billing = checkoutBilling(o)
	case "charge":
		f.addLink(MakeID(KindCharge, o.ID))
		f.addLink(MakeID(KindPayment, string(o.PaymentIntent)))
		if cus != "" {
			claim(str(o.BillingDetails.Email), RankStripe)
			claim(str(o.ReceiptEmail), RankStripe)
		}
		if o.AmountRefunded > 0 || o.Refunded {
			f.Billing = &Billing{Object: ObjCharge, ID: o.ID, Status: o.Status, Amount: o.Amount, Refunded: o.AmountRefunded,
				FullRefund: o.Refunded || (o.Amount > 0 && o.AmountRefunded >= o.Amount)}
		}
	case "dispute":
		f.addLink(MakeID(KindCharge, string(o.Charge)))
		f.addLink(MakeID(KindPayment, string(o.PaymentIntent)))
		if o.ID != "" {
			f.Billing = &Billing{Object: ObjDispute, ID: o.ID, Status: o.Status, Charge: string(o.Charge), Amount: o.Amount}
		}
	case "refund":
		f.addLink(MakeID(KindCharge, string(o.Charge)))
		f.addLink(MakeID(KindPayment, string(o.PaymentIntent)))
	case "payment_intent":
		f.addLink(MakeID(KindPayment, o.ID))
		if cus != "" {
			claim(str(o.ReceiptEmail), RankStripe)
		}
	}
	if len(f.Links) == 0 {
		return nil, nil
	}
	return f, nil
}

func subscriptionBilling(o *stripeObject) *Billing {
	b := &Billing{Object: ObjSubscription, ID: o.ID, Sub: o.ID, Status: o.Status, PeriodEnd: o.CurrentPeriodEnd, PlanHint: o.Metadata.planHint()}
	for _, it := range o.Items.Data {
		if it.CurrentPeriodEnd > b.PeriodEnd {
			b.PeriodEnd = it.CurrentPeriodEnd
		}
		p := it.Price
		if p.ID == "" {
			p = it.Plan
		}
		if b.Price == "" && p.ID != "" {
			b.Price, b.Product = p.ID, string(p.Product)
		}
	}
	if o.ID == "" {
		return nil
	}
	return b
}

func invoiceBilling(typ string, o *stripeObject) *Billing {
	paid := o.Status == "paid" || typ == "invoice.paid" || typ == "invoice.payment_succeeded"
	failed := !paid && typ == "invoice.payment_failed"
	if o.ID == "" || (!paid && !failed) {
		return nil
	}
	b := &Billing{Object: ObjInvoice, ID: o.ID, Status: o.Status, Paid: paid, Failed: failed, Reason: o.BillingReason, Amount: o.AmountPaid}
	b.Sub = string(o.Parent.SubscriptionDetails.Subscription)
	if b.Sub == "" {
		b.Sub = string(o.Subscription)
	}
	for _, l := range o.Lines.Data {
		if b.Sub == "" {
			b.Sub = string(l.Parent.SubscriptionItemDetails.Subscription)
		}
		if b.Sub == "" {
			b.Sub = string(l.Subscription)
		}
		price, product := l.Price.ID, string(l.Price.Product)
		if price == "" {
			price, product = string(l.Pricing.PriceDetails.Price), string(l.Pricing.PriceDetails.Product)
		}
		if b.Price == "" && price != "" {
			b.Price, b.Product = price, product
		}
		if l.Period.End > b.PeriodEnd {
			b.PeriodEnd = l.Period.End
		}
	}
	return b
}

// checkoutBilling reads a completed checkout. Only payment and subscription
// sessions pay for something (a setup session saves a card); a subscription
// session counts for its subscription, so one without the subscription's id
// waits for the subscription's own events.
func checkoutBilling(o *stripeObject) *Billing {
	paid := o.Status == "complete" && (o.PaymentStatus == "paid" || o.PaymentStatus == "no_payment_required")
	if o.ID == "" || !paid || (o.Mode != "payment" && o.Mode != "subscription") || (o.Mode == "subscription" && o.Subscription == "") {
		return nil
	}
	b := &Billing{Object: ObjCheckout, ID: o.ID, Sub: string(o.Subscription), Status: o.Status, Paid: true, Mode: o.Mode, PlanHint: o.Metadata.planHint()}
	for _, it := range o.LineItems.Data {
		if it.Price.ID != "" {
			b.Price, b.Product = it.Price.ID, string(it.Price.Product)
			break
		}
	}
	return b
}
