package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"strings"
	"time"

	"github.com/launchready/launchready/internal/alerts"
	"github.com/launchready/launchready/sinks/audit"
)

const queryTimeout = 20 * time.Second

func (s *server) overview(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	ov, err := s.overviewData(ctx, r.URL.Query().Get("range"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, "overview", map[string]any{"Title": "Overview", "Ov": ov, "Ranges": ranges})
}

func (s *server) mismatches(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	list, err := alerts.OpenMismatchList(ctx, s.q, s.db, s.now(), 500)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, "mismatches", map[string]any{"Title": "Open mismatches", "List": list})
}

func (s *server) timeline(ctx context.Context, q string) (*audit.TimelineResult, error) {
	tq := audit.TimelineQuery{Customer: q, Limit: 500}
	if strings.Contains(q, "@") {
		tq = audit.TimelineQuery{Email: q, Limit: 500}
	}
	return audit.Timeline(ctx, s.q, s.db, tq)
}

func (s *server) customers(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	data := map[string]any{"Title": "Customers", "Q": q}
	if q != "" {
		ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
		defer cancel()
		res, err := s.timeline(ctx, q)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		data["Result"] = res
	}
	s.render(w, r, "customers", data)
}

func (s *server) apiStats(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	ov, err := s.overviewData(ctx, r.URL.Query().Get("range"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, ov)
}

func (s *server) apiMismatches(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	list, err := alerts.OpenMismatchList(ctx, s.q, s.db, s.now(), 1000)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if list == nil {
		list = []alerts.OpenMismatch{}
	}
	writeJSON(w, list)
}

func (s *server) apiTimeline(w http.ResponseWriter, r *http.Request) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if q == "" {
		http.Error(w, "name a customer: ?q=<email or customer id>", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), queryTimeout)
	defer cancel()
	res, err := s.timeline(ctx, q)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, res)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	s.log.WarnContext(r.Context(), "ops query failed", "path", r.URL.Path, "err", err)
	code := http.StatusInternalServerError
	if errors.Is(err, context.DeadlineExceeded) {
		code = http.StatusGatewayTimeout
	}
	http.Error(w, "the audit trail could not be read: "+err.Error(), code)
}

func (s *server) render(w http.ResponseWriter, r *http.Request, name string, data map[string]any) {
	if _, ok := data["Q"]; !ok {
		data["Q"] = ""
	}
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		s.fail(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	_, _ = w.Write(b.Bytes())
}

var pages = template.Must(template.New("ops").Funcs(template.FuncMap{
	"time": func(t time.Time) string {
		if t.IsZero() {
			return "-"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"join": strings.Join,
}).Parse(pageTemplates))

const pageTemplates = `
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} · launchready ops</title>
<style>
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f3f5f9;color:#1d2433}
header{background:#1d2433;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:center}
header a{color:#cfd8ea;text-decoration:none}header a:hover{color:#fff}header b{font-size:16px}
header form{margin-left:auto}input[type=search]{padding:5px 8px;border-radius:4px;border:0;width:260px}
main{padding:16px 20px}h1{font-size:20px;margin:4px 0 12px}h2{font-size:14px;margin:0 0 6px}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:10px;margin-bottom:14px}
.stat{background:#fff;border-radius:6px;padding:10px 12px;box-shadow:0 1px 2px #0001}
.stat .v{font-size:24px;font-weight:600}.stat .t{color:#5b667a;font-size:12px}.err{color:#b3261e;font-size:12px}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(560px,1fr));gap:12px}
figure.panel{background:#fff;border-radius:6px;padding:10px 12px;margin:0;box-shadow:0 1px 2px #0001}
svg.chart{width:100%;height:auto;display:block}svg text{font:11px system-ui,sans-serif;fill:#5b667a}svg text.legend{fill:#1d2433}
table{border-collapse:collapse;width:100%;background:#fff;box-shadow:0 1px 2px #0001}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #e6e9ef;vertical-align:top}th{background:#eef1f6;font-weight:600}
.ranges a{margin-right:8px}.ranges a.on{font-weight:700;text-decoration:none;color:#1d2433}
.kind-event{color:#2f6fde}.kind-decision{color:#b05ed6}.kind-entitlement{color:#27a35a}.kind-mismatch{color:#e0533d}.kind-sink{color:#e6a117}
.dup{color:#b3261e;font-weight:600}.muted{color:#5b667a}
</style></head><body>
<header><b>launchready ops</b><a href="/ops/">Overview</a><a href="/ops/mismatches">Open mismatches</a><a href="/ops/customers">Customers</a>
<form method="get" action="/ops/customers"><input type="search" name="q" placeholder="email or customer id" value="{{.Q}}"></form></header>
<main><h1>{{.Title}}</h1>{{end}}

{{define "foot"}}</main></body></html>{{end}}

{{define "stat"}}<div class="stat" title="{{.Description}}"><div class="t">{{.Title}}</div><div class="v">{{.Text}}</div>{{if .Error}}<div class="err">{{.Error}}</div>{{end}}</div>{{end}}

{{define "overview"}}{{template "head" .}}
<p class="ranges">Range: {{range .Ranges}}<a href="/ops/?range={{.Name}}"{{if eq .Name $.Ov.Range}} class="on"{{end}}>{{.Name}}</a>{{end}}
<span class="muted">{{time .Ov.From}} – {{time .Ov.To}}</span></p>
<section class="stats" id="headline">{{range .Ov.Stats}}{{template "stat" .}}{{end}}</section>
<section class="charts">{{range .Ov.Charts}}<figure class="panel" data-kind="{{.Kind}}"><h2>{{.Title}}</h2>{{if .Error}}<div class="err">{{.Error}}</div>{{else}}{{.SVG}}{{end}}{{if .Description}}<figcaption class="muted">{{.Description}}</figcaption>{{end}}</figure>{{end}}</section>
{{if .Ov.Refunds}}<h2 style="margin-top:16px">Refunded customers still with access</h2>
<table><tr><th>customer</th><th>Stripe customer</th><th>refunded</th><th>why</th></tr>
{{range .Ov.Refunds}}<tr><td><a href="/ops/customers?q={{.Customer}}">{{.Customer}}</a></td><td>{{.Stripe}}</td><td>{{time .Refunded}}</td><td>{{.Reason}}</td></tr>{{end}}</table>{{end}}
{{if .Ov.Live}}<h2 style="margin-top:16px">This process since it started</h2><section class="stats">{{range .Ov.Live}}{{template "stat" .}}{{end}}</section>{{end}}
{{template "foot"}}{{end}}

{{define "mismatches"}}{{template "head" .}}
{{if .List}}<table class="mismatches"><tr><th>since</th><th>customer</th><th>kind</th><th>system</th><th>detail</th></tr>
{{range .List}}<tr class="mismatch-row"><td>{{time .Since}}</td><td><a href="/ops/customers?q={{.Customer}}">{{.Customer}}</a></td><td>{{.Kind}}</td><td>{{.System}}</td><td>{{.Detail}}</td></tr>{{end}}</table>
{{else}}<p>No open mismatches: every system agrees with the desired state.</p>{{end}}
{{template "foot"}}{{end}}

{{define "customers"}}{{template "head" .}}
<form method="get" action="/ops/customers"><input type="search" name="q" value="{{.Q}}" placeholder="email, customer id, Stripe/Kit/Circle id" autofocus> <button>Show timeline</button></form>
{{with .Result}}
<p>Query <b>{{.Query}}</b>: customer {{if .CustomerIDs}}{{join .CustomerIDs ", "}}{{else}}<span class="muted">not linked to a canonical customer</span>{{end}}; {{len .Entries}} entries{{if .Truncated}} (older ones left out){{end}}.</p>
{{if .Links}}<p class="muted">Linked: {{range .Links}}{{.Kind}} {{.Key}}; {{end}}</p>{{end}}
<table class="timeline"><tr><th>time</th><th>kind</th><th>source</th><th>what</th><th>status</th><th>detail</th><th>id</th></tr>
{{range .Entries}}<tr class="timeline-row kind-{{.Kind}}"><td>{{time .At}}</td><td>{{.Kind}}</td><td>{{.Source}}</td><td>{{.What}}</td><td{{if .Duplicate}} class="dup"{{end}}>{{.Status}}</td><td>{{.Detail}}</td><td class="muted">{{.ID}}</td></tr>{{end}}</table>
{{end}}
{{template "foot"}}{{end}}
`
