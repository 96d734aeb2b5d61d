package audit

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"github.com/launchready/launchready/schemas"
)

// One-pass decoders of the envelopes, on the redaction scanner: the audit
// writer reads every record of the pipeline, and encoding/json's reflection
// (and its separate validation pass) was most of its cost. Each reads the
// fields of its type by their JSON names, skips unknown ones, accepts null
// for any field (the zero value), and refuses what encoding/json would:
// invalid JSON, a string where a number belongs, a fraction in an integer.
// Field names are matched exactly (encoding/json also folds case); the
// stages write them exactly. A test compares each with encoding/json.

// object decodes the JSON object rec with field, which reads the value of
// each named field through s and returns false for names it does not know.
func object(rec []byte, field func(s *scanner, key string) (bool, error)) error {
	s := &scanner{in: rec}
	err := s.members(func(key string) error {
		known, err := field(s, key)
		if err == nil && !known {
			err = s.skip()
		}
		return err
	})
	if err != nil {
		return err
	}
	if s.ws(); s.pos != len(s.in) {
		return s.fail("trailing data")
	}
	return nil
}

// int64Field reads a whole number (or null, as 0) of bits size.
func (s *scanner) int64Field(bits int) (int64, error) {
	lit, err := s.numberLit()
	if err != nil || lit == nil {
		return 0, err
	}
	n, err := strconv.ParseInt(string(lit), 10, bits)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not a whole number of %d bits", ErrNotJSON, lit, bits)
	}
	return n, nil
}

func (s *scanner) uint32Field() (uint32, error) {
	lit, err := s.numberLit()
	if err != nil || lit == nil {
		return 0, err
	}
	n, err := strconv.ParseUint(string(lit), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not an unsigned 32-bit number", ErrNotJSON, lit)
	}
	return uint32(n), nil
}

func (s *scanner) float64Field() (float64, error) {
	lit, err := s.numberLit()
	if err != nil || lit == nil {
		return 0, err
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q is out of range", ErrNotJSON, lit)
	}
	return f, nil
}

// numberLit reads a number literal; nil for null.
func (s *scanner) numberLit() ([]byte, error) {
	if s.null() {
		return nil, nil
	}
	if s.pos >= len(s.in) || (s.in[s.pos] != '-' && (s.in[s.pos] < '0' || s.in[s.pos] > '9')) {
		return nil, s.fail("expected a number")
	}
	start := s.pos
	if err := s.number(); err != nil {
		return nil, err
	}
	return s.in[start:s.pos], nil
}

// stringsField reads an array of strings (or null, as nil).
func (s *scanner) stringsField() ([]string, error) {
	if s.null() {
		return nil, nil
	}
	if s.pos >= len(s.in) || s.in[s.pos] != '[' {
		return nil, s.fail("expected an array")
	}
	s.pos++
	out := []string{}
	s.ws()
	if s.pos < len(s.in) && s.in[s.pos] == ']' {
		s.pos++
		return out, nil
	}
	for {
		s.ws()
		v, err := s.stringField()
		if err != nil {
			return nil, err
		}
		out = append(out, v)
		s.ws()
		if s.pos >= len(s.in) {
			return nil, s.fail("unterminated array")
		}
		switch s.in[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return out, nil
		default:
			return nil, s.fail("expected ',' or ']'")
		}
	}
}

// rawField returns the value's JSON text as it is in the record ("null"
// included, as encoding/json's RawMessage keeps it).
func (s *scanner) rawField() ([]byte, error) {
	start := s.pos
	if err := s.skip(); err != nil {
		return nil, err
	}
	return s.in[start:s.pos], nil
}

// timePtrField reads a time into a pointer: nil for null.
func (s *scanner) timePtrField() (*time.Time, error) {
	if bytes.HasPrefix(s.in[s.pos:], []byte("null")) {
		s.pos += 4
		return nil, nil
	}
	t, err := s.timeField()
	return &t, err
}

func decodeIdentity(rec []byte) (e schemas.Identity, err error) {
	err = object(rec, func(s *scanner, key string) (bool, error) {
		var err error
		switch key {
		case "v":
			e.V, err = s.intField()
		case "customer_id":
			e.CustomerID, err = s.stringField()
		case "user_id":
			e.UserID, err = s.stringField()
		case "email":
			e.Email, err = s.stringField()
		case "emails":
			e.Emails, err = s.stringsField()
		case "stripe_customer_ids":
			e.Stripe, err = s.stringsField()
		case "circle_member_ids":
			e.Circle, err = s.stringsField()
		case "kit_subscriber_ids":
			e.Kit, err = s.stringsField()
		case "chat_session_ids":
			e.Sessions, err = s.stringsField()
		case "merged_into":
			e.MergedInto, err = s.stringField()
		case "version":
			e.Version, err = s.int64Field(64)
		case "updated_at":
			e.UpdatedAt, err = s.timeField()
		default:
			return false, nil
		}
		return true, err
	})
	return e, err
}

func decodeEntitlement(rec []byte) (e schemas.Entitlement, err error) {
	err = object(rec, func(s *scanner, key string) (bool, error) {
		var err error
		switch key {
		case "v":
			e.V, err = s.intField()
		case "customer_id":
			e.CustomerID, err = s.stringField()
		case "email":
			e.Email, err = s.stringField()
		case "user_id":
			e.UserID, err = s.stringField()
		case "plan":
			e.Plan, err = s.stringField()
		case "status":
			e.Status, err = s.stringField()
		case "access":
			e.Access, err = s.boolField()
		case "current_period_end":
			e.CurrentPeriodEnd, err = s.timePtrField()
		case "grace_until":
			e.GraceUntil, err = s.timePtrField()
		case "flagged":
			e.Flagged, err = s.boolField()
		case "flag_reason":
			e.FlagReason, err = s.stringField()
		case "source_event_ids":
			e.SourceEventIDs, err = s.stringsField()
		case "version":
			e.Version, err = s.int64Field(64)
		case "updated_at":
			e.UpdatedAt, err = s.timeField()
		case "last_event_at":
			e.LastEventAt, err = s.timeField()
		case "ingested_at":
			e.IngestedAt, err = s.timeField()
		case "circle_member_ids":
			e.CircleMemberIDs, err = s.stringsField()
		case "kit_subscriber_ids":
			e.KitSubscriberIDs, err = s.stringsField()
		case "deleted":
			e.Deleted, err = s.boolField()
		default:
			return false, nil
		}
		return true, err
	})
	return e, err
}

func decodeDecision(rec []byte) (e schemas.Decision, err error) {
	err = object(rec, func(s *scanner, key string) (bool, error) {
		var err error
		switch key {
		case "v":
			e.V, err = s.intField()
		case "decision_id":
			e.DecisionID, err = s.stringField()
		case "customer_id":
			e.CustomerID, err = s.stringField()
		case "kind":
			e.Kind, err = s.stringField()
		case "rule":
			e.Rule, err = s.stringField()
		case "before":
			e.Before, err = s.rawField()
		case "after":
			e.After, err = s.rawField()
		case "causing_event_ids":
			e.CausingIDs, err = s.stringsField()
		case "flagged":
			e.Flagged, err = s.boolField()
		case "at":
			e.At, err = s.timeField()
		case "provider_time":
			e.ProviderTime, err = s.timeField()
		default:
			return false, nil
		}
		return true, err
	})
	return e, err
}

func decodeMismatch(rec []byte) (e schemas.Mismatch, err error) {
	err = object(rec, func(s *scanner, key string) (bool, error) {
		var err error
		switch key {
		case "v":
			e.V, err = s.intField()
		case "mismatch_id":
			e.MismatchID, err = s.stringField()
		case "customer_id":
			e.CustomerID, err = s.stringField()
		case "kind":
			e.Kind, err = s.stringField()
		case "system":
			e.System, err = s.stringField()
		case "state":
			e.State, err = s.stringField()
		case "detail":
			e.Detail, err = s.stringField()
		case "at":
			e.At, err = s.timeField()
		default:
			return false, nil
		}
		return true, err
	})
	return e, err
}

func decodeSinkResult(rec []byte) (e schemas.SinkResult, err error) {
	err = object(rec, func(s *scanner, key string) (bool, error) {
		var err error
		switch key {
		case "v":
			e.V, err = s.intField()
		case "action_id":
			e.ActionID, err = s.stringField()
		case "customer_id":
			e.CustomerID, err = s.stringField()
		case "email":
			e.Email, err = s.stringField()
		case "provider":
			e.Provider, err = s.stringField()
		case "action":
			e.Action, err = s.stringField()
		case "target":
			e.Target, err = s.stringField()
		case "status":
			e.Status, err = s.stringField()
		case "http_status":
			e.HTTPStatus, err = s.intField()
		case "error":
			e.Error, err = s.stringField()
		case "attempts":
			e.Attempts, err = s.intField()
		case "duration_ms":
			e.DurationMS, err = s.float64Field()
		case "entitlement_version":
			e.EntitlementVersion, err = s.int64Field(64)
		case "at":
			e.At, err = s.timeField()
		default:
			return false, nil
		}
		return true, err
	})
	return e, err
}

// decodeChange reads a Change with its key and row images as raw JSON.
func decodeChange(rec []byte) (c changeWire, err error) {
	err = object(rec, func(s *scanner, key string) (bool, error) {
		var err error
		switch key {
		case "v":
			c.V, err = s.intField()
		case "op":
			c.Op, err = s.stringField()
		case "schema":
			c.Schema, err = s.stringField()
		case "table":
			c.Table, err = s.stringField()
		case "key":
			c.Key, err = s.rawField()
		case "before":
			c.Before, err = s.rawField()
		case "after":
			c.After, err = s.rawField()
		case "source":
			if s.null() {
				return true, nil
			}
			err = s.members(func(k string) error {
				var err error
				switch k {
				case "lsn":
					c.Source.LSN, err = s.stringField()
				case "commit_lsn":
					c.Source.CommitLSN, err = s.stringField()
				case "xid":
					c.Source.XID, err = s.uint32Field()
				case "commit_time":
					c.Source.CommitTime, err = s.timeField()
				case "snapshot":
					c.Source.Snapshot, err = s.boolField()
				case "slot":
					c.Source.Slot, err = s.stringField()
				default:
					err = s.skip()
				}
				return err
			})
		default:
			return false, nil // columns, unchanged: not stored
		}
		return true, err
	})
	return c, err
}
