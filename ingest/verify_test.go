package ingest

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/simulate/stripe"
)

func TestHMACVerifier(t *testing.T) {
	t.Parallel()
	now := time.Unix(1772446500, 0)
	body := []byte(`{"id":"evt_1","type":"invoice.paid","created":1772446500}`)
	v := newHMACVerifier([]string{"whsec_current", "whsec_previous"}, 300*time.Second)
	cases := []struct {
		name   string
		header string
		body   []byte
		want   error
	}{
		{"valid", stripe.Sign("whsec_current", body, now), body, nil},
		{"signed with the previous secret during rotation", stripe.Sign("whsec_previous", body, now), body, nil},
		{"one of several v1 matches", stripe.SignMany([]string{"whsec_other", "whsec_current"}, body, now), body, nil},
		{"v0 and damaged entries are ignored", stripe.Sign("whsec_current", body, now) + ",v0=abcd,v1=zz", body, nil},
		{"spaces after commas", strings.ReplaceAll(stripe.Sign("whsec_current", body, now), ",", ", "), body, nil},
		{"just inside the tolerance", stripe.Sign("whsec_current", body, now.Add(-300*time.Second)), body, nil},
		{"tampered body", stripe.Sign("whsec_current", body, now), []byte(strings.Replace(string(body), "evt_1", "evt_2", 1)), errSigMismatch},
		{"wrong secret", stripe.Sign("whsec_wrong", body, now), body, errSigMismatch},
		{"stale timestamp", stripe.Sign("whsec_current", body, now.Add(-301*time.Second)), body, errStale},
		{"timestamp from the future", stripe.Sign("whsec_current", body, now.Add(10*time.Minute)), body, errStale},
		{"missing header", "", body, errNoSignature},
		{"no v1", "t=1772446500,v0=" + strings.Repeat("a", 64), body, errBadSigHeader},
		{"no t", "v1=" + strings.Repeat("a", 64), body, errBadSigHeader},
		{"two t", "t=1772446500,t=1772446500,v1=" + strings.Repeat("a", 64), body, errBadSigHeader},
		{"non-numeric t", "t=-1772446500,v1=" + strings.Repeat("a", 64), body, errBadSigHeader},
		{"no equals sign", "garbage", body, errBadSigHeader},
		{"oversized header", "t=1772446500,v1=" + strings.Repeat("a", 5000), body, errBadSigHeader},
		{"t re-signed without the body's signature", strings.Replace(stripe.Sign("whsec_current", body, now), "t=1772446500", "t=1772446501", 1), body, errSigMismatch},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := v.Verify(c.header, c.body, now)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}
}

func TestHMACVerifierWithoutSecretRefusesEverything(t *testing.T) {
	t.Parallel()
	body := []byte(`{}`)
	now := time.Now()
	if err := newHMACVerifier(nil, time.Minute).Verify(stripe.Sign("", body, now), body, now); !errors.Is(err, errNoSecret) {
		t.Fatalf("Verify without secret = %v, want errNoSecret", err)
	}
}

func TestSecretVerifier(t *testing.T) {
	t.Parallel()
	v := newSecretVerifier([]string{"push-secret-1", "push-secret-2"})
	cases := []struct {
		given string
		want  error
	}{
		{"push-secret-1", nil},
		{"push-secret-2", nil},
		{"push-secret-3", errSecretMismatch},
		{"push-secret-1 ", errSecretMismatch},
		{"push-secret", errSecretMismatch},
		{"", errNoSignature},
	}
	for _, c := range cases {
		if err := v.Verify(c.given); !errors.Is(err, c.want) {
			t.Errorf("Verify(%q) = %v, want %v", c.given, err, c.want)
		}
	}
	if err := newSecretVerifier(nil).Verify("anything"); !errors.Is(err, errNoSecret) {
		t.Errorf("no secret configured: %v", err)
	}
}

func TestSplitSecrets(t *testing.T) {
	t.Parallel()
	got := splitSecrets(" whsec_a, ,whsec_b ")
	if len(got) != 2 || got[0] != "whsec_a" || got[1] != "whsec_b" {
		t.Fatalf("splitSecrets = %q", got)
	}
}
