package audit

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/launchready/launchready/internal/testenv"
)

func providersDir() string { return filepath.Join(filepath.Dir(testenv.Root()), "shared", "providers") }

// readProviderFile reads a file of the provider fixtures shared with the
// project (/work/shared/providers); tests skip when it is not there.
func readProviderFile(t testing.TB, name string) []byte {
	t.Helper()
	for _, dir := range []string{os.Getenv("LR_PROVIDERS_DIR"), providersDir(), "/work/shared/providers"} {
		if dir == "" {
			continue
		}
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			return b
		}
	}
	t.Skipf("provider fixture %s not found (set LR_PROVIDERS_DIR)", name)
	return nil
}

// forbidden are field names the default redaction must remove wherever they
// occur: card and payment method details, addresses, phones, names, tokens,
// secrets and capability links.
func forbidden(k string) bool {
	k = strings.ToLower(k)
	switch k {
	case "payment_method_details", "payment_method_options", "card", "source", "fingerprint", "last4",
		"exp_month", "exp_year", "address", "shipping", "shipping_details", "phone", "name",
		"client_secret", "tax_id", "tax_ids", "receipt_url", "hosted_invoice_url", "invoice_pdf", "url", "wallet", "three_d_secure":
		return true
	}
	if emailField(k) {
		return false // kept by design: the audit trail is searched by email
	}
	return strings.HasSuffix(k, "_address") || strings.HasSuffix(k, "_phone") || strings.HasSuffix(k, "_name") ||
		strings.Contains(k, "secret") || strings.Contains(k, "token") || strings.Contains(k, "password")
}

// kept are field names the redaction must leave in place: ids, types,
// amounts, currencies, statuses, timestamps and emails.
func kept(k string) bool {
	switch k {
	case "id", "object", "type", "currency", "status", "created", "email", "customer", "livemode", "payment_status", "mode":
		return true
	}
	return strings.HasPrefix(k, "amount") || strings.HasSuffix(k, "_email") || strings.HasSuffix(k, "_at") ||
		strings.HasPrefix(k, "current_period") || strings.HasPrefix(k, "period_")
}

// walk calls fn for every object field of a decoded JSON value with its path.
func walk(v any, path []string, fn func(path []string, key string, val any)) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			fn(path, k, val)
			walk(val, append(slices.Clone(path), k), fn)
		}
	case []any:
		for _, val := range x {
			walk(val, path, fn)
		}
	}
}

// lookup returns the value at path+key in a decoded document, following the
// same array-transparent paths as walk; ok is false when it is absent.
func lookup(v any, path []string, key string) (vals []any) {
	var rec func(v any, i int)
	rec = func(v any, i int) {
		switch x := v.(type) {
		case map[string]any:
			if i == len(path) {
				if val, ok := x[key]; ok {
					vals = append(vals, val)
				}
				return
			}
			if next, ok := x[path[i]]; ok {
				rec(next, i+1)
			}
		case []any:
			for _, e := range x {
				rec(e, i)
			}
		}
	}
	rec(v, 0)
	return vals
}

// TestRedactStripeObjects proves the default redaction on every full Stripe
// object of Stripe's published fixtures, wrapped in an event as a webhook
// delivers it: no card, payment method, address, phone, name, token or
// secret field survives at any depth, none of their values appears anywhere
// in the output, and every id, type, amount, status, timestamp and email is
// kept with its value.
func TestRedactStripeObjects(t *testing.T) {
	t.Parallel()
	var objects map[string]json.RawMessage
	if err := json.Unmarshal(readProviderFile(t, "stripe-objects.json"), &objects); err != nil {
		t.Fatal(err)
	}
	if len(objects) < 10 {
		t.Fatalf("stripe-objects.json holds %d objects, want the full set", len(objects))
	}
	r, err := NewRedactor(DefaultDrop)
	if err != nil {
		t.Fatal(err)
	}
	for name, obj := range objects {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			event := []byte(`{"id":"evt_1","object":"event","type":"` + name + `.updated","created":1772446500,"data":{"object":` + string(obj) + `}}`)
			out, err := r.Redact(event)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(out) {
				t.Fatalf("output is not JSON: %s", out)
			}
			var in, got any
			_ = json.Unmarshal(event, &in)
			_ = json.Unmarshal(out, &got)

			// Values of dropped fields, which must appear nowhere in the
			// output (those the input also holds in a kept field aside:
			// the fixtures reuse placeholders such as "obj_123").
			dropped, keptVals := map[string]bool{}, map[string]bool{}
			var leaves func(v any, under bool)
			leaves = func(v any, under bool) {
				switch x := v.(type) {
				case map[string]any:
					for k, val := range x {
						leaves(val, under || forbidden(k))
					}
				case []any:
					for _, val := range x {
						leaves(val, under)
					}
				case string:
					if under {
						dropped[x] = true
					} else {
						keptVals[x] = true
					}
				}
			}
			leaves(in, false)
			var secrets []string
			for s := range dropped {
				if len(s) >= 4 && !keptVals[s] {
					secrets = append(secrets, s)
				}
			}
			walk(got, nil, func(path []string, k string, _ any) {
				if forbidden(k) {
					t.Errorf("field %s.%s survived redaction", strings.Join(path, "."), k)
				}
			})
			outVals := map[string]bool{}
			leaves(got, false)
			for s := range keptVals {
				outVals[s] = true
			}
			for _, s := range secrets {
				// Short values ("card", "visa") also occur inside field
				// names; they must not occur as values. Long ones must not
				// occur at all.
				if outVals[s] || (len(s) >= 10 && bytes.Contains(out, []byte(s))) {
					t.Errorf("value %q of a dropped field appears in the output", s)
				}
			}

			// Every kept field whose ancestors are kept survives, unchanged.
			checked := 0
			walk(in, nil, func(path []string, k string, val any) {
				switch val.(type) {
				case map[string]any, []any:
					return
				}
				if !kept(k) {
					return
				}
				for i := range path {
					if r.drops(path[:i], path[i]) {
						return
					}
				}
				if r.drops(path, k) {
					t.Errorf("kept field %s.%s was dropped", strings.Join(path, "."), k)
					return
				}
				vals := lookup(got, path, k)
				want, _ := json.Marshal(val)
				found := false
				for _, v := range vals {
					if b, _ := json.Marshal(v); bytes.Equal(b, want) {
						found = true
					}
				}
				if !found {
					t.Errorf("kept field %s.%s = %s missing from the output", strings.Join(path, "."), k, want)
				}
				checked++
			})
			if checked < 5 {
				t.Errorf("only %d kept fields checked: the fixture looks wrong", checked)
			}
		})
	}
}

// TestRedactWebhookFixtures checks the trimmed provider bodies: identity
// fields stay (the timeline needs them), names go.
func TestRedactWebhookFixtures(t *testing.T) {
	t.Parallel()
	r, _ := NewRedactor(DefaultDrop)
	tests := []struct {
		file      string
		keep      []string
		drop      []string
		wantEmail []string
	}{
		{"payloads/stripe_charge.refunded.json", []string{`"customer":"cus_TESTcustomer01"`, `"amount_refunded":4900`, `"receipt_email":"maria.lopez@example.org"`, `"email":"maria.lopez@example.org"`}, nil, []string{"maria.lopez@example.org"}},
		{"payloads/stripe_checkout.session.completed.json", []string{`"client_reference_id":"user_8842"`, `"amount_total":4900`, `"payment_status":"paid"`, `"email":"Maria.Lopez@example.org"`}, []string{"Maria Lopez"}, []string{"maria.lopez@example.org"}},
		{"payloads/kit_subscriber.created.json", []string{`"email_address":"Maria.Lopez@example.org"`, `"state":"active"`}, []string{`"first_name"`}, []string{"maria.lopez@example.org"}},
		{"payloads/circle_community_member_search_response.json", []string{`"id":31337`, `"email":"maria.lopez@example.org"`, `"active":true`}, []string{"Maria", "Lopez\""}, []string{"maria.lopez@example.org"}},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.file), func(t *testing.T) {
			t.Parallel()
			f := rawFacts{provider: strings.SplitN(filepath.Base(tt.file), "_", 2)[0]}
			out, err := r.scan(readProviderFile(t, tt.file), &f)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range tt.keep {
				if !bytes.Contains(out, []byte(k)) {
					t.Errorf("%s missing from %s", k, out)
				}
			}
			for _, d := range tt.drop {
				if bytes.Contains(out, []byte(d)) {
					t.Errorf("%s survived in %s", d, out)
				}
			}
			if !slices.Equal(f.emails, tt.wantEmail) {
				t.Errorf("emails = %v, want %v", f.emails, tt.wantEmail)
			}
		})
	}
}

func TestRedactPatterns(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		patterns []string
		in, want string
	}{
		{"exact name at any depth", []string{"phone"}, `{"a":{"phone":"1","b":[{"phone":2,"c":3}]},"phone":null}`, `{"a":{"b":[{"c":3}]}}`},
		{"glob", []string{"*_address"}, `{"ip_address":"1.2.3.4","shipping_address":{"x":1},"address_line":"k"}`, `{"address_line":"k"}`},
		{"dotted path tail", []string{"billing_details.name"}, `{"name":"prod","billing_details":{"name":"Jenny","email":"j@x.io"}}`, `{"name":"prod","billing_details":{"email":"j@x.io"}}`},
		{"dotted path with glob", []string{"*_details.name"}, `{"customer_details":{"name":"J"},"details":{"name":"K"}}`, `{"customer_details":{},"details":{"name":"K"}}`},
		{"case-insensitive", []string{"Phone"}, `{"PHONE":{"n":1},"phones":true}`, `{"phones":true}`},
		{"emails escape globs", []string{"*_address", "*email*"}, `{"email_address":"a@b.c","customer_email":"d@e.f","ip_address":"1"}`, `{"email_address":"a@b.c","customer_email":"d@e.f"}`},
		{"emails named exactly go", []string{"customer_email"}, `{"email":"a@b.c","customer_email":"d@e.f"}`, `{"email":"a@b.c"}`},
		{"floor: secret names go even with an empty list", nil, `{"client_secret":"x","api_key":"k","card":{"last4":"4242"},"password_hash":"h","id":"1"}`, `{"id":"1"}`},
		{"card number in text is scrubbed", nil, `{"description":"paid with 4242 4242 4242 4242 today"}`, `{"description":"paid with [redacted] today"}`},
		{"credential in text is scrubbed", nil, `{"note":"key sk_live_abcdefghijkl1234"}`, `{"note":"key [redacted]"}`},
		{"whitespace is compacted, escapes kept", nil, "{ \"a\" : [ 1 , \"x\\ny\" ] ,\n \"b\":{} }", `{"a":[1,"x\ny"],"b":{}}`},
		{"escaped key matched decoded", []string{"phone"}, `{"ph\u006fne":"1","k":2}`, `{"k":2}`},
		{"scalars at the top", nil, `"text"`, `"text"`},
		{"first field dropped, commas right", []string{"a"}, `{"a":1,"b":2,"a":3,"c":[]}`, `{"b":2,"c":[]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r, err := NewRedactor(tt.patterns)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Redact([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("Redact(%s)\n got %s\nwant %s", tt.in, got, tt.want)
			}
		})
	}
}

func TestRedactRejectsInvalidJSON(t *testing.T) {
	t.Parallel()
	r, _ := NewRedactor(DefaultDrop)
	for _, in := range []string{``, `{`, `{"a":}`, `{"card":[1,}`, `[1,2`, `{"a":1}x`, `"\x"`, "\"a\x01\"", `01`, `1.`, `-`, `tru`, `{"a" 1}`, `{1:2}`} {
		if _, err := r.Redact([]byte(in)); err == nil {
			t.Errorf("Redact(%q) accepted invalid JSON", in)
		}
	}
	if _, err := NewRedactor([]string{"a..b"}); err == nil {
		t.Error("NewRedactor accepted an empty path segment")
	}
	if _, err := NewRedactor([]string{"[x"}); err == nil {
		t.Error("NewRedactor accepted a bad glob")
	}
}

// FuzzRedact: on any input, Redact never panics; valid JSON in means valid
// JSON out with no dropped field left; invalid JSON is refused whole.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"card":{"number":"4242424242424242"}}`, `[{"address":{"x":[1,2]}},"s",1.5e3,null,true]`, `{"k":"\u00e9\ud83d\ude00"}`} {
		f.Add([]byte(s))
	}
	for _, name := range []string{"payloads/stripe_checkout.session.completed.json", "payloads/kit_subscriber.created.json"} {
		if b, err := os.ReadFile(filepath.Join(providersDir(), name)); err == nil {
			f.Add(b)
		}
	}
	r, _ := NewRedactor(DefaultDrop)
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := r.Redact(in)
		valid := json.Valid(in)
		if valid && err != nil && !strings.Contains(err.Error(), "nested too deeply") {
			t.Fatalf("valid JSON refused: %v", err)
		}
		if err != nil {
			return
		}
		if !valid {
			t.Fatalf("invalid JSON accepted: %q → %q", in, out)
		}
		if !json.Valid(out) {
			t.Fatalf("output is not JSON: %q → %q", in, out)
		}
		// Numbers as written: valid JSON may hold one no float64 holds (1E700).
		var doc any
		dec := json.NewDecoder(bytes.NewReader(out))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			t.Fatal(err)
		}
		walk(doc, nil, func(path []string, k string, _ any) {
			if r.drops(path, k) {
				t.Fatalf("dropped field %s.%s left in %q", strings.Join(path, "."), k, out)
			}
		})
	})
}
