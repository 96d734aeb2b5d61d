package redact

import (
	"strings"
	"testing"
)

func TestString(t *testing.T) {
	t.Parallel()
	Register("my-registered-secret")
	Register("short") // too short to scrub: ordinary words must survive
	for _, tc := range []struct{ in, gone, kept string }{
		{"key my-registered-secret here", "my-registered-secret", "here"},
		{"sk_live_51HqLyjWDarjtT1zdp7dc in url", "sk_live_51HqLyjWDarjtT1zdp7dc", "in url"},
		{"whsec_1234567890abcdef", "whsec_1234567890abcdef", ""},
		{"Authorization: Bearer abcdefghijklmnop", "abcdefghijklmnop", "Authorization"},
		{"card 4000-0566-5566-5556 declined", "4000-0566-5566-5556", "declined"},
		{"a short story", "", "short"},
		{"order 1234567890123456 (not luhn)", "", "1234567890123456"},
	} {
		got := String(tc.in)
		if tc.gone != "" && strings.Contains(got, tc.gone) {
			t.Errorf("String(%q) = %q still holds %q", tc.in, got, tc.gone)
		}
		if tc.kept != "" && !strings.Contains(got, tc.kept) {
			t.Errorf("String(%q) = %q lost %q", tc.in, got, tc.kept)
		}
	}
}

func TestSensitiveKey(t *testing.T) {
	t.Parallel()
	for k, want := range map[string]bool{"Authorization": true, "X-Kit-Api-Key": true, "api_key": true, "stripe_secret": true, "email": false, "card_last4": true} {
		if got := SensitiveKey(k); got != want {
			t.Errorf("SensitiveKey(%q) = %v, want %v", k, got, want)
		}
	}
}
