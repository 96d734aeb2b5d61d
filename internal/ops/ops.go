// Package ops is the built-in ops page, served under /ops/ on the pipeline's
// HTTP server: the headline numbers and charts of the audit dashboard (the
// same SQL as dashboards/audit.json), the open mismatches, and a customer
// search that tells the audit timeline. Pages are rendered on the server
// with inline SVG charts; /ops/api/ answers the same data as JSON.
//
// Access needs LR_OPS_TOKEN: an `Authorization: Bearer <token>` header, or
// a visit to any ops URL with ?token=<token>, which sets an HttpOnly session
// cookie and redirects to the URL without the token. Anonymous requests get
// 401. Browsers on other origins may call /ops/api/ only from LR_CORS_ORIGINS.
package ops

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/launchready/launchready/internal/alerts"
	"github.com/launchready/launchready/internal/config"
	"github.com/launchready/launchready/internal/obs"
)

// Querier is the part of a ClickHouse connection the page uses
// (clickhouse-go's driver.Conn has it). Safe for concurrent use.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

// Options tune Register; the zero value is the default.
type Options struct {
	// Backlog, when set, adds consumer lag to the exported gauges.
	Backlog alerts.BacklogSource
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// NoGauges leaves the launchready_ops_* gauges unregistered.
	NoGauges bool
}

const cookieName = "lr_ops_session"

// Register adds the ops routes to mux: /ops/ (overview), /ops/mismatches,
// /ops/customers and /ops/api/…, all behind the token. Without
// LR_OPS_TOKEN they answer 404. It also exports the launchready_ops_*
// gauges the Prometheus rules watch (see alerts.ExportGauges).
func Register(mux *http.ServeMux, cfg *config.Config, conn Querier, log *slog.Logger, opts ...Options) error {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if log == nil {
		log = slog.Default()
	}
	th, err := alerts.LoadThresholds()
	if err != nil {
		return err
	}
	if !o.NoGauges {
		alerts.ExportGauges(conn, cfg.ClickHouseDatabase, th, o.Backlog)
	}
	s := &server{cfg: cfg, q: conn, db: cfg.ClickHouseDatabase, log: obs.Component(log, "ops"), now: o.Now, th: th}
	if cfg.OpsToken.Set() {
		s.session = sessionValue(cfg.OpsToken.Reveal())
	}
	mux.Handle("/ops", http.RedirectHandler("/ops/", http.StatusMovedPermanently))
	mux.Handle("/ops/", s.guard(s.routes()))
	return nil
}

type server struct {
	cfg     *config.Config
	q       Querier
	db      string
	log     *slog.Logger
	now     func() time.Time
	th      alerts.Thresholds
	session string // the cookie value that proves a login
}

func (s *server) routes() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /ops/{$}", s.overview)
	m.HandleFunc("GET /ops/mismatches", s.mismatches)
	m.HandleFunc("GET /ops/customers", s.customers)
	m.HandleFunc("GET /ops/api/stats", s.apiStats)
	m.HandleFunc("GET /ops/api/mismatches", s.apiMismatches)
	m.HandleFunc("GET /ops/api/timeline", s.apiTimeline)
	return m
}

// sessionValue derives the cookie from the token, so the token itself is
// never stored in the browser; changing the token ends every session.
func sessionValue(token string) string {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("launchready ops session v1"))
	return hex.EncodeToString(mac.Sum(nil))
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// guard applies, in order: the disabled check, CORS for the API, the
// ?token= login, then the bearer token or session cookie.
func (s *server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if !s.cfg.OpsToken.Set() {
			http.Error(w, "the ops page is disabled: set LR_OPS_TOKEN", http.StatusNotFound)
			return
		}
		api := strings.HasPrefix(r.URL.Path, "/ops/api/")
		if api && !s.cors(w, r) {
			return
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		token := s.cfg.OpsToken.Reveal()
		if q := r.URL.Query(); q.Has("token") {
			if !equal(q.Get("token"), token) {
				s.refuse(w, r, "wrong token")
				return
			}
			http.SetCookie(w, &http.Cookie{Name: cookieName, Value: s.session, Path: "/ops/", HttpOnly: true,
				Secure: r.TLS != nil, SameSite: http.SameSiteLaxMode, MaxAge: int((12 * time.Hour).Seconds())})
			q.Del("token")
			u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
			http.Redirect(w, r, u.String(), http.StatusSeeOther)
			return
		}
		if auth, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && equal(strings.TrimSpace(auth), token) {
			next.ServeHTTP(w, r)
			return
		}
		if c, err := r.Cookie(cookieName); err == nil && equal(c.Value, s.session) {
			next.ServeHTTP(w, r)
			return
		}
		s.refuse(w, r, "no token")
	})
}

func (s *server) refuse(w http.ResponseWriter, r *http.Request, why string) {
	s.log.InfoContext(r.Context(), "ops request refused", "path", r.URL.Path, "reason", why, "remote", r.RemoteAddr)
	w.Header().Set("WWW-Authenticate", `Bearer realm="launchready ops"`)
	http.Error(w, "401 unauthorized: send Authorization: Bearer <LR_OPS_TOKEN>, or open /ops/?token=<LR_OPS_TOKEN> once to sign in", http.StatusUnauthorized)
}

// cors answers for /ops/api/: an Origin in LR_CORS_ORIGINS gets the CORS
// headers; a preflight from any other origin is refused (403); a simple
// request from one goes on without the headers, so the browser withholds
// the answer from the page. It reports whether to go on.
func (s *server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	w.Header().Add("Vary", "Origin")
	allowed := origin != "" && slices.Contains(s.cfg.CORSOrigins, origin)
	if allowed {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Methods", "GET, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Authorization")
		h.Set("Access-Control-Max-Age", "600")
	}
	if r.Method == http.MethodOptions && !allowed {
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return false
	}
	return true
}
