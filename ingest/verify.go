package ingest

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Verification failures. Each is a rejection reason in metrics and logs; none
// carries header or body content.
var (
	errNoSignature    = errors.New("missing signature header")
	errBadSigHeader   = errors.New("malformed signature header")
	errStale          = errors.New("timestamp outside tolerance")
	errSigMismatch    = errors.New("signature mismatch")
	errNoSecret       = errors.New("no signing secret configured")
	errSecretMismatch = errors.New("shared secret mismatch")
)

// Bounds on a signature header, so a hostile header cannot make verification
// expensive: its length, and how many v1 entries are compared.
const (
	maxSigHeader = 4096
	maxV1        = 16
)

// signedHeader is a parsed "t=<unix>,v1=<hex>[,v1=<hex>…]" header, the scheme
// Stripe (Stripe-Signature) and Kit (X-Kit-Signature) share. Other schemes
// (v0, …) are ignored, as Stripe's own libraries do.
type signedHeader struct {
	ts   string // exactly as sent: it is part of the signed payload
	unix int64
	v1   [][]byte
}

// parseSignedHeader parses a signature header. It fails on an empty header,
// a missing, repeated or non-numeric t, no v1 entry, or an oversized header.
func parseSignedHeader(h string) (signedHeader, error) {
	var s signedHeader
	if strings.TrimSpace(h) == "" {
		return s, errNoSignature
	}
	if len(h) > maxSigHeader {
		return s, errBadSigHeader
	}
	seenT := false
	for part := range strings.SplitSeq(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return s, errBadSigHeader
		}
		switch k {
		case "t":
			if seenT || v == "" || len(v) > 12 {
				return s, errBadSigHeader
			}
			for i := 0; i < len(v); i++ {
				if v[i] < '0' || v[i] > '9' {
					return s, errBadSigHeader
				}
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return s, errBadSigHeader
			}
			s.ts, s.unix, seenT = v, n, true
		case "v1":
			if len(s.v1) >= maxV1 {
				continue
			}
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				continue // a damaged entry cannot match; another v1 still may
			}
			s.v1 = append(s.v1, b)
		}
	}
	if !seenT || len(s.v1) == 0 {
		return s, errBadSigHeader
	}
	return s, nil
}

// hmacVerifier checks "t=…,v1=…" signatures against one or more secrets
// (several during rotation) with a timestamp tolerance.
type hmacVerifier struct {
	secrets   [][]byte
	tolerance time.Duration
}

func newHMACVerifier(secrets []string, tolerance time.Duration) *hmacVerifier {
	v := &hmacVerifier{tolerance: tolerance}
	for _, s := range secrets {
		v.secrets = append(v.secrets, []byte(s))
	}
	return v
}

// Verify reports nil when header signs body with any of the secrets at a
// time within tolerance of now. Comparisons are constant-time; the timestamp
// is checked first so a replayed request costs no HMAC.
func (v *hmacVerifier) Verify(header string, body []byte, now time.Time) error {
	if len(v.secrets) == 0 {
		return errNoSecret
	}
	sh, err := parseSignedHeader(header)
	if err != nil {
		return err
	}
	age := now.Unix() - sh.unix
	if age < 0 {
		age = -age
	}
	if time.Duration(age)*time.Second > v.tolerance {
		return errStale
	}
	match := 0
	for _, secret := range v.secrets {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte(sh.ts))
		m.Write([]byte{'.'})
		m.Write(body)
		want := m.Sum(nil)
		for _, got := range sh.v1 {
			match |= subtle.ConstantTimeCompare(want, got)
		}
	}
	if match != 1 {
		return errSigMismatch
	}
	return nil
}

// secretVerifier checks a shared secret sent in a header (Circle workflow
// push). Both sides are hashed first so the comparison takes the same time
// whatever the lengths.
type secretVerifier struct {
	sums [][sha256.Size]byte
}

func newSecretVerifier(secrets []string) *secretVerifier {
	v := &secretVerifier{}
	for _, s := range secrets {
		v.sums = append(v.sums, sha256.Sum256([]byte(s)))
	}
	return v
}

// Verify reports nil when given equals one of the secrets.
func (v *secretVerifier) Verify(given string) error {
	if len(v.sums) == 0 {
		return errNoSecret
	}
	if given == "" {
		return errNoSignature
	}
	sum := sha256.Sum256([]byte(given))
	match := 0
	for _, s := range v.sums {
		match |= subtle.ConstantTimeCompare(sum[:], s[:])
	}
	if match != 1 {
		return errSecretMismatch
	}
	return nil
}

// splitSecrets turns a comma-separated secret setting into its parts.
func splitSecrets(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
