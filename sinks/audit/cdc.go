package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
)

// changeWire is a Change with its row images kept as raw JSON, for redaction.
type changeWire struct {
	schemas.Change
	Key    json.RawMessage `json:"key"`
	Before json.RawMessage `json:"before"`
	After  json.RawMessage `json:"after"`
}

// userTables are the tables whose rows are people: their key is the app's
// user id (a row of another table belongs to the user in its user_id column).
var userTables = map[string]bool{"users": true, "user": true, "accounts": true, "account": true, "customers": true, "customer": true, "members": true, "profiles": true}

// rowFacts gathers the user id and emails of a row image's top-level columns.
type rowFacts struct {
	userID string
	emails []string
}

func (f *rowFacts) wants(key string) bool {
	return key == "user_id" || key == "email" || key == "email_address" || strings.HasSuffix(key, "_email")
}

func (f *rowFacts) visit(path []string, key, v string) {
	if len(path) != 0 {
		return
	}
	if key == "user_id" {
		f.userID = v
		return
	}
	if e := normEmail(v); strings.Contains(e, "@") && !contains(f.emails, e) {
		f.emails = append(f.emails, e)
	}
}

func (d *decoder) cdc(b *batch, m *kafka.Message) error {
	c, err := decodeChange(m.Value)
	if err != nil {
		return err
	}
	if err := checkVersion(c.V, schemas.CDCVersion); err != nil {
		return err
	}
	var facts rowFacts
	before, err := d.redactOptional(b, c.Before, &facts)
	if err != nil {
		return err
	}
	after, err := d.redactOptional(b, c.After, &facts)
	if err != nil {
		return err
	}
	rowKey, err := d.redactOptional(b, c.Key, nil)
	if err != nil {
		return err
	}
	// The identity is the CDC stage's own DedupKey, which includes the
	// primary key (rows of one snapshot share an LSN); numbers keep their
	// literal so the key reads as the stage wrote it.
	if len(c.Key) > 0 {
		dec := json.NewDecoder(bytes.NewReader(c.Key))
		dec.UseNumber()
		if err := dec.Decode(&c.Change.Key); err != nil {
			return fmt.Errorf("cdc key: %w", err)
		}
	}
	customerKey := facts.userID
	if customerKey == "" && userTables[strings.ToLower(c.Table)] {
		customerKey = singleKey(c.Change.Key)
	}
	at := orTime(c.Source.CommitTime, m.Time)
	recordID := c.Change.DedupKey()
	t := &b.cdc
	t.base.add(at)
	t.customerKey = append(t.customerKey, customerKey)
	t.recordID = append(t.recordID, recordID)
	t.schema = append(t.schema, c.Schema)
	t.table = append(t.table, c.Table)
	t.op = append(t.op, c.Op)
	t.lsn = append(t.lsn, c.Source.LSN)
	t.commitLSN = append(t.commitLSN, c.Source.CommitLSN)
	t.xid = append(t.xid, c.Source.XID)
	t.snapshot = append(t.snapshot, boolByte(c.Source.Snapshot))
	t.rowKey = append(t.rowKey, rowKey)
	t.emails = append(t.emails, nonNil(facts.emails))
	t.changed = append(t.changed, changedColumns(c.Op, c.Before, c.After))
	t.before = append(t.before, before)
	t.after = append(t.after, after)
	t.origin.add(m)
	b.keys.add("cdc_changes", customerKey, recordID, at, facts.emails...)
	return nil
}

// singleKey is the value of a one-column key, as text.
func singleKey(key map[string]any) string {
	if len(key) != 1 {
		return ""
	}
	for _, v := range key {
		switch x := v.(type) {
		case string:
			return x
		case json.Number:
			return x.String()
		case bool, nil:
			return ""
		default:
			b, _ := json.Marshal(x)
			return string(b)
		}
	}
	return ""
}

// changedColumns lists the columns an update changed, when the change carries
// both row images; nil otherwise.
func changedColumns(op string, before, after json.RawMessage) []string {
	out := []string{}
	if op != schemas.OpUpdate || len(before) == 0 || len(after) == 0 {
		return out
	}
	b, okB := topLevel(before)
	a, okA := topLevel(after)
	if !okB || !okA {
		return out
	}
	for k, v := range a {
		if old, ok := b[k]; !ok || string(old) != string(v) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// topLevel maps an object's top-level names to their values' JSON text (as
// encoding/json would into map[string]json.RawMessage, without copying);
// null is no columns. ok is false when raw is not an object.
func topLevel(raw []byte) (m map[string][]byte, ok bool) {
	if string(bytes.TrimSpace(raw)) == "null" {
		return nil, true
	}
	m = map[string][]byte{}
	err := object(raw, func(s *scanner, key string) (bool, error) {
		v, err := s.rawField()
		if err == nil {
			m[strings.Clone(key)] = v
		}
		return true, err
	})
	return m, err == nil
}
