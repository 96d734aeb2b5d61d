package reconcile

import (
	"bytes"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/launchready/launchready/schemas"
)

// decodeStripeRecord is decodeRecord for lr.raw.stripe with the walker: the
// envelope and the Stripe body in one pass, without reflection.
func decodeStripeRecord(value []byte) (f *Fact, dup bool, err error) {
	var e rawEnvelope[stripeEvent]
	w := &walker{b: value}
	if err := w.envelope(&e); err != nil {
		return nil, false, fmt.Errorf("stripe record: %w", err)
	}
	if e.V > schemas.RawVersion {
		return nil, false, fmt.Errorf("raw event version %d is newer than %d", e.V, schemas.RawVersion)
	}
	if e.Provider != schemas.ProviderStripe {
		return nil, false, fmt.Errorf("a %q event on the stripe topic", e.Provider)
	}
	f, err = factFromStripe(e.raw(), &e.Body)
	return f, e.Duplicate, err
}

// fold returns the name a key matches as encoding/json matches a field
// name — exactly, else case-insensitively — or "".
func fold(key []byte, names ...string) string {
	for _, n := range names {
		if string(key) == n {
			return n
		}
	}
	// Case-insensitive, as encoding/json matches names. Only a non-ASCII key
	// can fold to a name of another length (the Kelvin sign is 'k').
	ascii := true
	for _, c := range key {
		if c >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	for _, n := range names {
		if (!ascii || len(key) == len(n)) && bytes.EqualFold(key, []byte(n)) {
			return n
		}
	}
	return ""
}

func (w *walker) envelope(e *rawEnvelope[stripeEvent]) error {
	var typeErr error
	err := w.object(func(key []byte) error {
		var err error
		switch fold(key, "v", "provider", "event_id", "type", "object_id", "provider_time", "received_at", "duplicate", "body") {
		case "v":
			err = w.intField(&e.V)
		case "provider":
			err = w.str(&e.Provider)
		case "event_id":
			err = w.str(&e.EventID)
		case "type":
			err = w.str(&e.Type)
		case "object_id":
			err = w.str(&e.ObjectID)
		case "provider_time":
			err = w.time(&e.ProviderTime)
		case "received_at":
			err = w.time(&e.ReceivedAt)
		case "duplicate":
			err = w.boolean(&e.Duplicate)
		case "body":
			err = w.stripeEvent(&e.Body)
		default:
			err = w.skip()
		}
		return soft(&typeErr, err)
	})
	if err != nil {
		return err
	}
	if err := w.end(); err != nil {
		return err
	}
	return typeErr
}

// soft records a type error and lets the walk go on; a syntax error stops it.
func soft(typeErr *error, err error) error {
	if err == errType {
		if *typeErr == nil {
			*typeErr = err
		}
		return nil
	}
	return err
}

func (w *walker) time(t *time.Time) error {
	if w.null() {
		return nil
	}
	if w.peek() != '"' {
		if err := w.skip(); err != nil {
			return err
		}
		return errType
	}
	start := w.i
	if _, err := w.rawString(); err != nil {
		return err
	}
	if err := t.UnmarshalJSON(w.b[start:w.i]); err != nil {
		return errType
	}
	return nil
}

func (w *walker) stripeEvent(ev *stripeEvent) error {
	var typeErr error
	err := w.object(func(key []byte) error {
		var err error
		switch fold(key, "id", "object", "type", "created", "api_version", "data") {
		case "id":
			err = w.str(&ev.ID)
		case "object":
			err = w.str(&ev.Object)
		case "type":
			err = w.str(&ev.Type)
		case "created":
			err = w.int(&ev.Created)
		case "api_version":
			err = w.str(&ev.APIVersion)
		case "data":
			err = w.object(func(key []byte) error {
				var err error
				switch fold(key, "object", "previous_attributes") {
				case "object":
					err = w.stripeObject(&ev.Data.Object)
				case "previous_attributes":
					err = w.object(func(key []byte) error {
						if fold(key, "email") == "email" {
							return soft(&typeErr, w.strPtr(&ev.Data.Previous.Email))
						}
						return w.skip()
					})
				default:
					err = w.skip()
				}
				return soft(&typeErr, err)
			})
		default:
			err = w.skip()
		}
		return soft(&typeErr, err)
	})
	if err != nil {
		return err
	}
	return typeErr
}

// idOrObj reads a reference as idOrObj.UnmarshalJSON does.
func (w *walker) idOrObj(dst *idOrObj) error {
	switch w.peek() {
	case '"':
		var s string
		err := w.str(&s)
		*dst = idOrObj(s)
		return err
	case '{':
		return w.decodeInto(dst)
	}
	*dst = ""
	return w.skip()
}

func (w *walker) meta(dst *meta) error {
	return w.decodeInto(dst)
}

var objectKeys = []string{
	"id", "object", "customer", "status", "email", "metadata", "items", "current_period_end", "customer_email",
	"billing_reason", "subscription", "parent", "lines", "payments", "amount_paid", "client_reference_id",
	"customer_details", "mode", "payment_status", "line_items", "amount", "amount_refunded", "refunded", "charge",
	"payment_intent", "billing_details", "receipt_email",
}

func (w *walker) stripeObject(o *stripeObject) error {
	var typeErr error
	err := w.object(func(key []byte) error {
		var err error
		switch fold(key, objectKeys...) {
		case "id":
			err = w.str(&o.ID)
		case "object":
			err = w.str(&o.Object)
		case "customer":
			err = w.idOrObj(&o.Customer)
		case "status":
			err = w.str(&o.Status)
		case "email":
			err = w.strPtr(&o.Email)
		case "metadata":
			err = w.meta(&o.Metadata)
		case "items":
			err = w.itemList(&o.Items.Data, &typeErr)
		case "current_period_end":
			err = w.int(&o.CurrentPeriodEnd)
		case "customer_email":
			err = w.strPtr(&o.CustomerEmail)
		case "billing_reason":
			err = w.str(&o.BillingReason)
		case "subscription":
			err = w.idOrObj(&o.Subscription)
		case "parent":
			err = w.object(func(key []byte) error {
				if fold(key, "subscription_details") != "subscription_details" {
					return w.skip()
				}
				return soft(&typeErr, w.object(func(key []byte) error {
					if fold(key, "subscription") != "subscription" {
						return w.skip()
					}
					return soft(&typeErr, w.idOrObj(&o.Parent.SubscriptionDetails.Subscription))
				}))
			})
		case "lines":
			err = w.object(func(key []byte) error {
				if fold(key, "data") != "data" {
					return w.skip()
				}
				if w.null() {
					o.Lines.Data = nil
					return nil
				}
				old, n := o.Lines.Data, 0
				o.Lines.Data = old[:0]
				return soft(&typeErr, w.array(func() error {
					var l stripeLine
					if n < cap(old) {
						l = old[:cap(old)][n]
					}
					n++
					err := w.stripeLine(&l, &typeErr)
					o.Lines.Data = append(o.Lines.Data, l)
					return err
				}))
			})
		case "payments":
			err = w.object(func(key []byte) error {
				if fold(key, "data") != "data" {
					return w.skip()
				}
				if w.null() {
					o.Payments.Data = nil
					return nil
				}
				old, n := o.Payments.Data, 0
				o.Payments.Data = old[:0]
				return soft(&typeErr, w.array(func() error {
					var p struct {
						Payment struct {
							Charge        idOrObj `json:"charge"`
							PaymentIntent idOrObj `json:"payment_intent"`
						} `json:"payment"`
					}
					if n < cap(old) {
						p = old[:cap(old)][n]
					}
					n++
					err := w.object(func(key []byte) error {
						if fold(key, "payment") != "payment" {
							return w.skip()
						}
						return soft(&typeErr, w.object(func(key []byte) error {
							switch fold(key, "charge", "payment_intent") {
							case "charge":
								return soft(&typeErr, w.idOrObj(&p.Payment.Charge))
							case "payment_intent":
								return soft(&typeErr, w.idOrObj(&p.Payment.PaymentIntent))
							}
							return w.skip()
						}))
					})
					o.Payments.Data = append(o.Payments.Data, p)
					return soft(&typeErr, err)
				}))
			})
		case "amount_paid":
			err = w.int(&o.AmountPaid)
		case "client_reference_id":
			err = w.strPtr(&o.ClientReferenceID)
		case "customer_details":
			err = w.emailHolder(&o.CustomerDetails.Email, &typeErr)
		case "mode":
			err = w.str(&o.Mode)
		case "payment_status":
			err = w.str(&o.PaymentStatus)
		case "line_items":
			err = w.itemList(&o.LineItems.Data, &typeErr)
		case "amount":
			err = w.int(&o.Amount)
		case "amount_refunded":
			err = w.int(&o.AmountRefunded)
		case "refunded":
			err = w.boolean(&o.Refunded)
		case "charge":
			err = w.idOrObj(&o.Charge)
		case "payment_intent":
			err = w.idOrObj(&o.PaymentIntent)
		case "billing_details":
			err = w.emailHolder(&o.BillingDetails.Email, &typeErr)
		case "receipt_email":
			err = w.strPtr(&o.ReceiptEmail)
		default:
			err = w.skip()
		}
		return soft(&typeErr, err)
	})
	if err != nil {
		return err
	}
	return typeErr
}

// emailHolder reads {email} of customer_details / billing_details.
func (w *walker) emailHolder(dst **string, typeErr *error) error {
	return w.object(func(key []byte) error {
		if fold(key, "email") != "email" {
			return w.skip()
		}
		return soft(typeErr, w.strPtr(dst))
	})
}

// itemList reads {data: [item…]} of subscription items and line items.
func (w *walker) itemList(dst *[]stripeItem, typeErr *error) error {
	return w.object(func(key []byte) error {
		if fold(key, "data") != "data" {
			return w.skip()
		}
		if w.null() {
			*dst = nil
			return nil
		}
		old, n := *dst, 0
		*dst = old[:0]
		return soft(typeErr, w.array(func() error {
			var it stripeItem
			if n < cap(old) {
				it = old[:cap(old)][n]
			}
			n++
			err := w.object(func(key []byte) error {
				var err error
				switch fold(key, "price", "plan", "current_period_end") {
				case "price":
					err = w.price(&it.Price, typeErr)
				case "plan":
					err = w.price(&it.Plan, typeErr)
				case "current_period_end":
					err = w.int(&it.CurrentPeriodEnd)
				default:
					err = w.skip()
				}
				return soft(typeErr, err)
			})
			*dst = append(*dst, it)
			return soft(typeErr, err)
		}))
	})
}

func (w *walker) price(p *stripePrice, typeErr *error) error {
	return w.object(func(key []byte) error {
		var err error
		switch fold(key, "id", "product") {
		case "id":
			err = w.str(&p.ID)
		case "product":
			err = w.idOrObj(&p.Product)
		default:
			err = w.skip()
		}
		return soft(typeErr, err)
	})
}

func (w *walker) stripeLine(l *stripeLine, typeErr *error) error {
	return w.object(func(key []byte) error {
		var err error
		switch fold(key, "price", "pricing", "period", "subscription", "parent") {
		case "price":
			err = w.price(&l.Price, typeErr)
		case "pricing":
			err = w.object(func(key []byte) error {
				if fold(key, "price_details") != "price_details" {
					return w.skip()
				}
				return soft(typeErr, w.object(func(key []byte) error {
					switch fold(key, "price", "product") {
					case "price":
						return soft(typeErr, w.idOrObj(&l.Pricing.PriceDetails.Price))
					case "product":
						return soft(typeErr, w.idOrObj(&l.Pricing.PriceDetails.Product))
					}
					return w.skip()
				}))
			})
		case "period":
			err = w.object(func(key []byte) error {
				if fold(key, "end") != "end" {
					return w.skip()
				}
				return soft(typeErr, w.int(&l.Period.End))
			})
		case "subscription":
			err = w.idOrObj(&l.Subscription)
		case "parent":
			err = w.object(func(key []byte) error {
				if fold(key, "subscription_item_details") != "subscription_item_details" {
					return w.skip()
				}
				return soft(typeErr, w.object(func(key []byte) error {
					if fold(key, "subscription") != "subscription" {
						return w.skip()
					}
					return soft(typeErr, w.idOrObj(&l.Parent.SubscriptionItemDetails.Subscription))
				}))
			})
		default:
			err = w.skip()
		}
		return soft(typeErr, err)
	})
}
