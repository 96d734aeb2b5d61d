package reconcile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/launchready/launchready/schemas"
)

// DecodeChange decodes one CDC record with numbers kept exact (a bigint user
// id must not pass through float64).
func DecodeChange(b []byte) (*schemas.Change, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var c schemas.Change
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("cdc change: %w", err)
	}
	return &c, nil
}

// FactFromChange turns a row change of the app's users or chatbot sessions
// table into a Fact (nil for other tables, deletes, and rows naming nobody).
// A user's email update claims the new address and records the old one: the
// link moves, the customer stays.
func (s Settings) FactFromChange(c *schemas.Change) *Fact {
	table := c.Schema + "." + c.Table
	if c.Op == schemas.OpDelete || c.After == nil {
		return nil
	}
	f := &Fact{Key: c.DedupKey(), Source: SourceApp, Type: table + ":" + c.Op, EventID: c.Source.LSN, At: c.Source.CommitTime.UTC()}
	switch table {
	case s.UsersTable:
		uid := MakeID(KindUser, cell(c.After[s.UsersIDColumn]))
		if uid == "" {
			return nil
		}
		f.addLink(uid)
		if e := f.addEmail(cell(c.After[s.UsersEmailColumn])); e != "" {
			f.Email = &EmailClaim{Of: uid, Email: e, Rank: RankApp}
			if c.Before != nil {
				if p := f.addEmail(cell(c.Before[s.UsersEmailColumn])); p != "" && p != e {
					f.PrevEmail = p
				}
			}
		}
	case s.SessionsTable:
		if s.SessionsTable == "" {
			return nil
		}
		f.addLink(MakeID(KindSession, cell(c.After[s.SessionsIDColumn])))
		f.addLink(MakeID(KindUser, cell(c.After[s.SessionsUserColumn])))
	default:
		return nil
	}
	if len(f.Links) == 0 {
		return nil
	}
	return f
}

// cell renders a CDC column value as text ("" for null).
func cell(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	default:
		return fmt.Sprint(x)
	}
}
