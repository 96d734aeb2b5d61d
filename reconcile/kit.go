package reconcile

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/launchready/launchready/schemas"
)

// kitBody is one Kit event ({id, type, created, data:{subscriber}}) or a legacy
// webhook body ({subscriber} or a bare purchase object).
type kitBody struct {
	ID      flexID   `json:"id"`
	Type    string   `json:"type"`
	Created string   `json:"created"`
	Data    *kitData `json:"data"`
	Sub     *kitSub  `json:"subscriber"`
	Tag     *kitTag  `json:"tag"`
	Email   string   `json:"email_address"` // legacy purchase
	TxnTime string   `json:"transaction_time"`
}

type kitData struct {
	Subscriber *kitSub `json:"subscriber"`
	Tag        *kitTag `json:"tag"`
}

type kitSub struct {
	ID        flexID `json:"id"`
	Email     string `json:"email_address"`
	State     string `json:"state"`
	CreatedAt string `json:"created_at"`
}

type kitTag struct {
	ID   flexID `json:"id"`
	Name string `json:"name"`
}

// flexID reads a numeric or string id as text ("" for null and 0).
type flexID string

func (k *flexID) UnmarshalJSON(b []byte) error {
	*k = ""
	if len(b) == 0 || string(b) == "null" {
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*k = flexID(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("id is neither a number nor a string")
	}
	// Provider ids start at 1: a zero is a placeholder, not an id.
	if n.String() != "0" {
		*k = flexID(n.String())
	}
	return nil
}

// DecodeKit turns a raw Kit event into a Fact (nil when it names nobody).
// Kit events are CRM events: they link identities and report what Kit holds,
// and never touch billing.
func DecodeKit(raw *schemas.RawEvent) (*Fact, error) {
	var b kitBody
	if err := json.Unmarshal(raw.Body, &b); err != nil {
		return nil, fmt.Errorf("kit event %s: %w", raw.EventID, err)
	}
	return factFromKit(raw, &b), nil
}

func factFromKit(raw *schemas.RawEvent, b *kitBody) *Fact {
	f := &Fact{Key: raw.DedupKey(), Source: SourceKit, Type: raw.Type, EventID: raw.EventID, At: raw.ProviderTime, Received: raw.ReceivedAt}
	if b.Type != "" {
		f.Type = b.Type
	}
	if f.EventID == "" {
		f.EventID = string(b.ID)
	}
	sub, tag := b.Sub, b.Tag
	if b.Data != nil {
		if b.Data.Subscriber != nil {
			sub = b.Data.Subscriber
		}
		if b.Data.Tag != nil {
			tag = b.Data.Tag
		}
	}
	if t := parseTime(b.Created); f.At.IsZero() && !t.IsZero() {
		f.At = t
	}
	switch {
	case sub != nil:
		kid := MakeID(KindKit, string(sub.ID))
		f.addLink(kid)
		if e := f.addEmail(sub.Email); e != "" {
			of := kid
			if of == "" {
				of = MakeID(KindEmail, e)
			}
			f.Email = &EmailClaim{Of: of, Email: e, Rank: RankKit}
		}
		if f.At.IsZero() {
			f.At = parseTime(sub.CreatedAt)
		}
		if kid != "" {
			f.Observe = &Observe{System: SourceKit, Record: string(sub.ID), State: sub.State}
			if tag != nil && tag.ID != "" {
				if id, err := strconv.ParseInt(string(tag.ID), 10, 64); err == nil {
					if present, ok := kitTagChange(f.Type); ok {
						f.Observe.Holds = []Holding{{Kind: HoldTag, ID: id, Name: tag.Name, Present: present}}
					}
				}
			}
		}
	case b.Email != "":
		// A legacy purchase: it names the buyer's email only. Purchases are
		// billing in Kit's world, not ours: link, never entitle.
		f.addEmail(b.Email)
		if f.At.IsZero() {
			f.At = parseTime(b.TxnTime)
		}
	}
	if len(f.Links) == 0 {
		return nil
	}
	return f
}

// kitTagChange reads a tag event type: added (true) or removed (false).
func kitTagChange(typ string) (present, ok bool) {
	t := strings.ToLower(typ)
	switch {
	case strings.Contains(t, "tag_remove"), strings.Contains(t, "untag"):
		return false, true
	case strings.Contains(t, "tag_add"), strings.Contains(t, "tagged"):
		return true, true
	}
	return false, false
}

// parseTime reads the ISO 8601 forms the providers use; zero when it cannot.
func parseTime(s string) time.Time {
	if s == "" {
		return time.Time{}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05 MST", "2006-01-02 15:04:05 -0700", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}
