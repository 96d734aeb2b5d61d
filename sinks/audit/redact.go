package audit

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/launchready/launchready/internal/redact"
)

// DefaultDrop is the redaction applied to every payload before it is stored
// when no other list is configured. Ids, object types, amounts, currencies,
// statuses, timestamps, metadata and emails are kept (the audit trail must
// answer "what happened to whom"); payment method and card details, postal
// addresses, phone numbers, personal names, tax ids, tokens, client secrets
// and capability URLs (receipt and hosted invoice links) are dropped.
//
// A pattern without a dot names a field at any depth and may use path.Match
// globs ("*_address"); a dotted pattern names the last fields of a path
// ("billing_details.name"). Matching ignores case.
var DefaultDrop = []string{
	// Payment instruments: card and bank details, whatever object holds them.
	"payment_method_details", "payment_method_options", "payment_method_data",
	"card", "cards", "card_present", "source", "sources", "bank_account",
	"us_bank_account", "sepa_debit", "acss_debit", "bacs_debit", "au_becs_debit",
	"fingerprint", "last4", "dynamic_last4", "exp_month", "exp_year", "iin", "mandate",
	"three_d_secure", "wallet",
	// Addresses, phones, names, tax ids.
	"address", "*_address", "shipping", "shipping_details", "phone", "*_phone",
	"name", "*_name", "tax_id", "tax_ids", "*_tax_ids", "ip", "*_ip", "ip_address",
	"date_of_birth", "dob",
	// Tokens, secrets and capability links.
	"client_secret", "*secret*", "*token*", "*password*", "url", "*_url", "invoice_pdf",
}

// Redactor removes configured fields from JSON documents and scrubs
// credential- and card-shaped strings from what is left. It is safe for
// concurrent use.
type Redactor struct {
	exact map[string]bool // single-field patterns without globs
	globs []string        // single-field glob patterns
	paths [][]string      // dotted patterns, split

	// cache memoises the verdict on a field name (without paths): payloads
	// repeat the same few hundred names, and glob matching is not free.
	cache  sync.Map // string → bool
	cached atomic.Int64
}

// maxCached bounds the verdict cache: field names come from outside input.
const maxCached = 20000

// NewRedactor compiles drop patterns (see DefaultDrop for the syntax). Fields
// whose names mark secrets (redact.SensitiveKey: secret, password, token,
// card, cvc, iban, signature, authorization, api key) are dropped whatever
// the list says: the list adds to that floor, it cannot lower it. Email
// fields (email, *_email, email_address, *_email_address) escape glob
// patterns such as "*_address" and are dropped only when a pattern names
// them exactly: the audit trail is searched by email.
func NewRedactor(patterns []string) (*Redactor, error) {
	r := &Redactor{exact: map[string]bool{}}
	for _, p := range patterns {
		p = strings.ToLower(strings.TrimSpace(p))
		if p == "" {
			continue
		}
		segs := strings.Split(p, ".")
		for _, s := range segs {
			if s == "" {
				return nil, fmt.Errorf("redaction pattern %q: empty field name", p)
			}
			if _, err := path.Match(s, ""); err != nil {
				return nil, fmt.Errorf("redaction pattern %q: %w", p, err)
			}
		}
		switch {
		case len(segs) > 1:
			r.paths = append(r.paths, segs)
		case strings.ContainsAny(p, "*?["):
			r.globs = append(r.globs, p)
		default:
			r.exact[p] = true
		}
	}
	return r, nil
}

// drops reports whether the field key under the object path parent is removed.
func (r *Redactor) drops(parent []string, key string) bool {
	if r.dropsName(key) {
		return true
	}
	// A key can carry what a value would (a card number used as a map key):
	// such a field goes whole, key and value.
	if suspicious([]byte(key)) && redact.String(key) != key {
		return true
	}
	if len(r.paths) == 0 {
		return false
	}
	k := strings.ToLower(key)
	for _, p := range r.paths {
		n := len(p)
		if n-1 > len(parent) {
			continue
		}
		if ok, _ := path.Match(p[n-1], k); !ok {
			continue
		}
		match := true
		for i := 0; i < n-1; i++ {
			seg := strings.ToLower(parent[len(parent)-(n-1)+i])
			if ok, _ := path.Match(p[i], seg); !ok {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

// dropsName is the verdict of the single-field patterns and the floor.
func (r *Redactor) dropsName(key string) bool {
	if v, ok := r.cache.Load(key); ok {
		return v.(bool)
	}
	k := strings.ToLower(key)
	drop := redact.SensitiveKey(k) || r.exact[k]
	for _, g := range r.globs {
		if drop || emailField(k) {
			break
		}
		drop, _ = path.Match(g, k)
	}
	if r.cached.Load() < maxCached {
		r.cached.Add(1)
		r.cache.Store(strings.Clone(key), drop) // key may view the scanned record
	}
	return drop
}

func emailField(k string) bool {
	return k == "email" || k == "email_address" || strings.HasSuffix(k, "_email") || strings.HasSuffix(k, "_email_address")
}

// ErrNotJSON is returned for a payload that is not one valid JSON document.
var ErrNotJSON = errors.New("payload is not valid JSON")

// maxDepth bounds nesting, as encoding/json does.
const maxDepth = 10000

// Redact returns doc, compacted, without the dropped fields, its strings
// scrubbed by internal/redact. It fails with ErrNotJSON when doc is not one
// valid JSON document; then nothing of doc may be stored.
func (r *Redactor) Redact(doc []byte) ([]byte, error) {
	return r.scan(doc, nil)
}

// visitor gathers facts (emails, ids) in the redaction pass. wants is asked
// for each field name; visit then gets the kept scalar value of that field
// (string text, or a number's literal) with the object path above it.
type visitor interface {
	wants(key string) bool
	visit(path []string, key, value string)
}

// scan is Redact that also hands selected kept scalars to v (nil for none).
func (r *Redactor) scan(doc []byte, v visitor) ([]byte, error) {
	return r.scanWith(doc, v, nil)
}

// scanWith is scan with a goroutine's own verdict map (see scanner.drops).
func (r *Redactor) scanWith(doc []byte, v visitor, verdicts map[string]bool) ([]byte, error) {
	s := scanner{in: doc, out: make([]byte, 0, len(doc)), r: r, v: v, verdicts: verdicts}
	s.ws()
	if err := s.value(true, 0); err != nil {
		return nil, err
	}
	s.ws()
	if s.pos != len(s.in) {
		return nil, fmt.Errorf("%w: trailing data at byte %d", ErrNotJSON, s.pos)
	}
	return s.out, nil
}

// suspicious is a cheap filter in front of redact.String (which runs several
// regular expressions): only text holding a run of 15 or more digits
// (single spaces or dashes between them allowed, as in a card number) or a
// credential's marks (sk_/rk_ live or test key prefixes, whsec_, an
// authorization scheme followed by a space) is scanned. One pass, no
// allocation: it runs on every string of every payload.
func suspicious(v []byte) bool {
	if len(v) < 14 {
		return false // shorter than any card number or credential
	}
	run := 0
	for i, c := range v {
		switch {
		case c >= '0' && c <= '9':
			if run++; run >= 15 {
				return true
			}
			continue
		case (c == ' ' || c == '-') && run > 0 && i+1 < len(v) && v[i+1] >= '0' && v[i+1] <= '9':
			continue // a separator inside a digit group
		}
		run = 0
		switch c {
		case '_':
			if i >= 2 && (string(v[i-2:i]) == "sk" || string(v[i-2:i]) == "rk") &&
				(bytes.HasPrefix(v[i+1:], []byte("live_")) || bytes.HasPrefix(v[i+1:], []byte("test_"))) {
				return true
			}
			if i >= 5 && string(v[i-5:i]) == "whsec" {
				return true
			}
		case ' ':
			for _, scheme := range authSchemes {
				if i >= len(scheme) && bytes.EqualFold(v[i-len(scheme):i], scheme) {
					return true
				}
			}
		}
	}
	return false
}

var authSchemes = [][]byte{[]byte("bearer"), []byte("token"), []byte("basic")}
