package ops

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/launchready/launchready/dashboards"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/testenv"
)

// fakeCH answers every query with err (the auth tests never need data).
type fakeCH struct{ err error }

func (f fakeCH) Query(context.Context, string, ...any) (driver.Rows, error) { return nil, f.err }

const token = "ops-test-token-0123456789"

func newTestServer(t *testing.T, tok string, origins ...string) *httptest.Server {
	t.Helper()
	cfg, err := config.LoadFrom(func(string) (string, bool) { return "", false }, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.OpsToken = config.Secret(tok)
	cfg.CORSOrigins = origins
	mux := http.NewServeMux()
	if err := Register(mux, cfg, fakeCH{errors.New("no clickhouse here")}, testenv.Logger(t), Options{NoGauges: true}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Anonymous and wrong-token requests get 401; a bearer token or the session
// cookie set by a ?token= login get through (here to a 500: no ClickHouse).
func TestAuth(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, token)
	login, err := http.Get(srv.URL + "/ops/mismatches?token=wrong")
	if err != nil {
		t.Fatal(err)
	}
	login.Body.Close()
	cases := []struct {
		name   string
		path   string
		header map[string]string
		cookie *http.Cookie
		want   int
	}{
		{"anonymous page", "/ops/", nil, nil, http.StatusUnauthorized},
		{"anonymous api", "/ops/api/mismatches", nil, nil, http.StatusUnauthorized},
		{"wrong bearer", "/ops/api/mismatches", map[string]string{"Authorization": "Bearer nope"}, nil, http.StatusUnauthorized},
		{"basic is not bearer", "/ops/api/mismatches", map[string]string{"Authorization": "Basic " + token}, nil, http.StatusUnauthorized},
		{"forged cookie", "/ops/mismatches", nil, &http.Cookie{Name: cookieName, Value: token}, http.StatusUnauthorized},
		{"bearer", "/ops/api/mismatches", map[string]string{"Authorization": "Bearer " + token}, nil, http.StatusInternalServerError},
		{"session cookie", "/ops/mismatches", nil, &http.Cookie{Name: cookieName, Value: sessionValue(token)}, http.StatusInternalServerError},
		{"unknown page behind auth", "/ops/nothing", map[string]string{"Authorization": "Bearer " + token}, nil, http.StatusNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(http.MethodGet, srv.URL+c.path, nil)
			for k, v := range c.header {
				req.Header.Set(k, v)
			}
			if c.cookie != nil {
				req.AddCookie(c.cookie)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, c.want)
			}
			if c.want == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	if login.StatusCode != http.StatusUnauthorized {
		t.Fatalf("?token=wrong: status %d, want 401", login.StatusCode)
	}
}

// ?token= sets an HttpOnly cookie (not the token itself) and redirects to
// the same URL without the token, keeping the other parameters.
func TestTokenLogin(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, token)
	cl := &http.Client{CheckRedirect: noRedirect}
	resp, err := cl.Get(srv.URL + "/ops/customers?q=a%40b.c&token=" + url.QueryEscape(token))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/ops/customers?q=a%40b.c" {
		t.Fatalf("status %d location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	var c *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == cookieName {
			c = k
		}
	}
	if c == nil || !c.HttpOnly || c.Value == token || c.Value != sessionValue(token) || c.Path != "/ops/" {
		t.Fatalf("cookie %+v", c)
	}
	if resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatal("no Referrer-Policy: the token in the URL could leak")
	}
}

// Without LR_OPS_TOKEN the page is off (404), even with a bearer header.
func TestDisabledWithoutToken(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, "")
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/ops/", nil)
	req.Header.Set("Authorization", "Bearer ")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("status %d, want 404", resp.StatusCode)
	}
}

// CORS headers only for LR_CORS_ORIGINS; preflights from others are refused;
// pages never get CORS headers.
func TestCORS(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, token, "https://admin.example.com")
	cases := []struct {
		name, method, path, origin string
		want                       int
		allow                      string
	}{
		{"preflight allowed", http.MethodOptions, "/ops/api/stats", "https://admin.example.com", http.StatusNoContent, "https://admin.example.com"},
		{"preflight other origin", http.MethodOptions, "/ops/api/stats", "https://evil.example", http.StatusForbidden, ""},
		{"get from other origin", http.MethodGet, "/ops/api/mismatches", "https://evil.example", http.StatusInternalServerError, ""},
		{"get allowed", http.MethodGet, "/ops/api/mismatches", "https://admin.example.com", http.StatusInternalServerError, "https://admin.example.com"},
		{"page from allowed origin", http.MethodGet, "/ops/mismatches", "https://admin.example.com", http.StatusInternalServerError, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			req, _ := http.NewRequest(c.method, srv.URL+c.path, nil)
			req.Header.Set("Origin", c.origin)
			if c.method == http.MethodGet {
				req.Header.Set("Authorization", "Bearer "+token)
			} else {
				req.Header.Set("Access-Control-Request-Method", "GET")
				req.Header.Set("Access-Control-Request-Headers", "authorization")
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != c.want || resp.Header.Get("Access-Control-Allow-Origin") != c.allow {
				t.Fatalf("status %d allow-origin %q, want %d %q", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"), c.want, c.allow)
			}
			if c.allow != "" && !strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
				t.Fatal("Authorization not allowed in CORS requests")
			}
		})
	}
}

// Every table a dashboard query reads is qualified with the audit database.
func TestQualifyEveryDashboardTable(t *testing.T) {
	t.Parallel()
	d, err := dashboards.ByUID("launchready-audit")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range d.Panels {
		for _, tg := range p.Targets {
			q := qualify(tg.RawSQL, "lr_x")
			for _, f := range strings.Split(q, "FROM ")[1:] {
				if !strings.HasPrefix(f, "lr_x.") && !strings.HasPrefix(f, "(") {
					t.Errorf("%s: unqualified FROM %.30s", p.Title, f)
				}
			}
		}
	}
}

func TestFormatValue(t *testing.T) {
	t.Parallel()
	cases := []struct {
		v    float64
		unit string
		want string
	}{
		{0.2857, "percentunit", "28.6%"}, {0, "percentunit", "0%"}, {250, "ms", "250 ms"}, {1500, "ms", "1.5 s"},
		{1048576, "bytes", "1 MiB"}, {512, "bytes", "512 B"}, {7, "short", "7"}, {2.345, "", "2.35"},
	}
	for _, c := range cases {
		if got := formatValue(c.v, c.unit); got != c.want {
			t.Errorf("formatValue(%v, %q) = %q, want %q", c.v, c.unit, got, c.want)
		}
	}
}

func TestLineChartEscapesAndScales(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	svg := string(lineChart([]dashboards.Series{{Name: `<script>x</script>`, Points: []dashboards.Point{{At: t0, Value: 3}, {At: t0.Add(time.Hour), Value: 7}}}}, t0, t0.Add(2*time.Hour), "short"))
	if strings.Contains(svg, "<script>") || !strings.Contains(svg, "&lt;script&gt;") {
		t.Fatalf("series name not escaped: %s", svg)
	}
	if !strings.Contains(svg, `class="series"`) || !strings.Contains(svg, ">10<") {
		t.Fatalf("want a polyline and a y axis up to 10: %s", svg)
	}
}
