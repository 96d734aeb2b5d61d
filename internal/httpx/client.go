// Package httpx is the outbound HTTP client of every provider integration
// (Stripe backfill, Circle poller and sink, Kit sink): go-retryablehttp with
// jittered backoff on 5xx, timeouts and 429 (honouring Retry-After where the
// provider sends it), a sliding-window rate limiter and a monthly budget that
// every attempt — retries included — passes through, and errors that tell
// permanent failures from retryable ones.
package httpx

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/internal/obs"
	"github.com/launchready/launchready/internal/redact"
)

// Options configures a Client.
type Options struct {
	// Provider names the API in metrics and errors: stripe, kit, circle.
	Provider string
	BaseURL  string
	// Auth sets the credential header on every request.
	Auth func(h http.Header)
	// Limiter and Budget are shared by every Client of one credential.
	Limiter *Limiter
	Budget  *Budget
	// Timeout of one attempt; MaxRetries after the first attempt.
	Timeout    time.Duration
	MaxRetries int
	// RetryWaitMin/Max bound the jittered exponential backoff.
	RetryWaitMin, RetryWaitMax time.Duration
	Log                        *slog.Logger
}

// Client calls one provider's JSON API.
type Client struct {
	opt Options
	rc  *retryablehttp.Client
}

var (
	requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_provider_requests_total", Help: "Outbound provider API attempts by provider, method and status code (0: no response).",
	}, []string{"provider", "method", "code"})
	latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "launchready_provider_request_seconds", Help: "Outbound provider API attempt latency.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
	}, []string{"provider"})
	limiterWait = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "launchready_provider_ratelimit_wait_seconds_total", Help: "Time spent waiting for the client-side rate limiter.",
	}, []string{"provider"})
	budgetUsed = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "launchready_provider_monthly_requests_used", Help: "Requests counted against the provider's monthly quota this month.",
	}, []string{"provider"})
	budgetQuota = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "launchready_provider_monthly_quota", Help: "The provider's monthly request quota.",
	}, []string{"provider"})
)

func init() { obs.Registry.MustRegister(requests, latency, limiterWait, budgetUsed, budgetQuota) }

// BudgetMetric returns an onUse callback for NewBudget that exports the
// provider's monthly usage.
func BudgetMetric(provider string) func(used, quota int) {
	return func(used, quota int) {
		budgetUsed.WithLabelValues(provider).Set(float64(used))
		budgetQuota.WithLabelValues(provider).Set(float64(quota))
	}
}

// New returns a Client.
func New(o Options) *Client {
	if o.Timeout == 0 {
		o.Timeout = 15 * time.Second
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 6
	}
	if o.RetryWaitMin == 0 {
		o.RetryWaitMin = 200 * time.Millisecond
	}
	if o.RetryWaitMax == 0 {
		o.RetryWaitMax = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	rc := retryablehttp.NewClient()
	rc.HTTPClient = &http.Client{Timeout: o.Timeout, Transport: &gate{next: http.DefaultTransport, opt: &o}}
	rc.RetryMax = o.MaxRetries
	rc.RetryWaitMin = o.RetryWaitMin
	rc.RetryWaitMax = o.RetryWaitMax
	rc.Backoff = backoff
	rc.CheckRetry = checkRetry
	rc.ErrorHandler = retryablehttp.PassthroughErrorHandler
	rc.Logger = nil
	return &Client{opt: o, rc: rc}
}

// gate is the transport under retryablehttp: every attempt waits for the rate
// limiter and takes from the monthly budget, so retries count too.
type gate struct {
	next http.RoundTripper
	opt  *Options
}

type attemptsKey struct{}

// scrubbed keeps an error's chain (errors.Is still finds ErrBudgetExhausted
// or context.Canceled) while its text is redacted: a URL in a transport error
// may carry a credential.
type scrubbed struct{ err error }

func (s scrubbed) Error() string { return redact.String(s.err.Error()) }
func (s scrubbed) Unwrap() error { return s.err }

func (g *gate) RoundTrip(req *http.Request) (*http.Response, error) {
	if n, ok := req.Context().Value(attemptsKey{}).(*atomic.Int32); ok {
		n.Add(1)
	}
	if err := g.opt.Budget.Take(); err != nil {
		return nil, err
	}
	waited, err := g.opt.Limiter.Wait(req.Context())
	limiterWait.WithLabelValues(g.opt.Provider).Add(waited.Seconds())
	if err != nil {
		return nil, err
	}
	start := time.Now()
	resp, err := g.next.RoundTrip(req)
	latency.WithLabelValues(g.opt.Provider).Observe(time.Since(start).Seconds())
	code := "0"
	if resp != nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	requests.WithLabelValues(g.opt.Provider, req.Method, code).Inc()
	return resp, err
}

// checkRetry retries connection errors, timeouts, 429 and 5xx (but 501), and
// never retries a refused budget or a cancelled context.
func checkRetry(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		if errors.Is(err, ErrBudgetExhausted) {
			return false, err
		}
		return true, nil
	}
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout {
		return true, nil
	}
	if resp.StatusCode >= 500 && resp.StatusCode != http.StatusNotImplemented {
		return true, nil
	}
	return false, nil
}

// backoff honours Retry-After (seconds or HTTP date) on 429 and 503, and
// otherwise waits a full-jitter exponential delay between min and max.
func backoff(min, max time.Duration, attempt int, resp *http.Response) time.Duration {
	if resp != nil && (resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable) {
		if d, ok := RetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
			if d > max {
				d = max
			}
			return d
		}
	}
	ceil := min << uint(attempt)
	if ceil > max || ceil <= 0 {
		ceil = max
	}
	return min + time.Duration(rand.Int64N(int64(ceil-min)+1))
}

// RetryAfter parses a Retry-After header value.
func RetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d, true
		}
		return 0, true
	}
	return 0, false
}

// StatusError is a provider's non-2xx answer after retries.
type StatusError struct {
	Provider, Method, Path string
	Status                 int
	Body                   string // first 512 bytes, redacted
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s %s %s: HTTP %d: %s", e.Provider, e.Method, e.Path, e.Status, e.Body)
}

// Permanent reports a failure that retrying will not fix (4xx but 408 and 429).
func (e *StatusError) Permanent() bool {
	return e.Status >= 400 && e.Status < 500 && e.Status != http.StatusTooManyRequests && e.Status != http.StatusRequestTimeout
}

// IsPermanent reports whether err is a permanent provider error.
func IsPermanent(err error) bool {
	var se *StatusError
	return errors.As(err, &se) && se.Permanent()
}

// Response is a completed call.
type Response struct {
	Status   int
	Header   http.Header
	Body     []byte
	Attempts int
}

// Do sends method path (relative to BaseURL) with body encoded as JSON (nil
// for none), retrying as configured. A 2xx answer decodes into out (if not
// nil). A non-2xx answer after retries returns *StatusError with the response.
// Blocks; not idempotent unless the endpoint is.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) (*Response, error) {
	var rdr io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s %s %s: encode body: %w", c.opt.Provider, method, path, err)
		}
		rdr = bytes.NewReader(b)
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, strings.TrimRight(c.opt.BaseURL, "/")+path, rdr)
	if err != nil {
		return nil, fmt.Errorf("%s %s %s: %w", c.opt.Provider, method, path, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.opt.Auth != nil {
		c.opt.Auth(req.Header)
	}
	var attempts atomic.Int32
	req = req.WithContext(context.WithValue(ctx, attemptsKey{}, &attempts))
	resp, err := c.rc.Do(req)
	if err != nil {
		return &Response{Attempts: int(attempts.Load())}, fmt.Errorf("%s %s %s: %w", c.opt.Provider, method, path, scrubbed{err})
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	r := &Response{Status: resp.StatusCode, Header: resp.Header, Body: data, Attempts: int(attempts.Load())}
	if err != nil {
		return r, fmt.Errorf("%s %s %s: read body: %w", c.opt.Provider, method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		snippet := string(data)
		if len(snippet) > 512 {
			snippet = snippet[:512]
		}
		return r, &StatusError{Provider: c.opt.Provider, Method: method, Path: path, Status: resp.StatusCode, Body: redact.String(strings.TrimSpace(snippet))}
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return r, fmt.Errorf("%s %s %s: decode answer: %w", c.opt.Provider, method, path, err)
		}
	}
	return r, nil
}
