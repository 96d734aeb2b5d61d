// Package redact removes secrets and card data from text before it is logged,
// stored or answered. Config registers every secret setting here at load time,
// so a secret that ends up inside an error string is still scrubbed.
package redact

import (
	"regexp"
	"strings"
	"sync"
)

// Mask replaces whatever was removed.
const Mask = "[redacted]"

var (
	mu      sync.RWMutex
	secrets []string
)

// Register adds a secret value to scrub. Values shorter than 6 characters are
// ignored: scrubbing them would mangle ordinary text and they are not secrets
// worth the name.
func Register(v string) {
	if len(v) < 6 {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range secrets {
		if s == v {
			return
		}
	}
	secrets = append(secrets, v)
}

var patterns = []*regexp.Regexp{
	// Provider credentials by their documented prefixes.
	regexp.MustCompile(`\b(sk|rk)_(live|test)_[A-Za-z0-9]{8,}`),
	regexp.MustCompile(`\bwhsec_[A-Za-z0-9+/=]{8,}`),
	// Authorization header values.
	regexp.MustCompile(`(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}`),
}

// cardCandidate finds 15 to 19 digits, optionally grouped by spaces or dashes;
// only those passing the Luhn check are treated as card numbers.
var cardCandidate = regexp.MustCompile(`\b(?:\d[ -]?){14,18}\d\b`)

func luhn(s string) bool {
	sum, n, double := 0, 0, false
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c < '0' || c > '9' {
			continue
		}
		d := int(c - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		n++
		double = !double
	}
	return n >= 15 && sum%10 == 0
}

// String returns s with every registered secret and every credential- or
// card-shaped run replaced by Mask.
func String(s string) string {
	mu.RLock()
	for _, sec := range secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, Mask)
		}
	}
	mu.RUnlock()
	for _, p := range patterns {
		if p.MatchString(s) {
			s = p.ReplaceAllString(s, Mask)
		}
	}
	if cardCandidate.MatchString(s) {
		s = cardCandidate.ReplaceAllStringFunc(s, func(m string) string {
			if luhn(m) {
				return Mask
			}
			return m
		})
	}
	return s
}

var sensitiveKeys = []string{"secret", "password", "passwd", "token", "apikey", "authorization", "signature", "card", "cvc", "iban"}

// SensitiveKey reports whether a field or header name names a secret, so its
// value is dropped whole rather than scanned.
func SensitiveKey(k string) bool {
	k = strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(k))
	for _, s := range sensitiveKeys {
		if strings.Contains(k, s) {
			return true
		}
	}
	return false
}
