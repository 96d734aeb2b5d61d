package traffic

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	circlesim "github.com/launchready/launchready/simulate/circle"
	kitsim "github.com/launchready/launchready/simulate/kit"
	"github.com/launchready/launchready/simulate/stripe"
)

// AppSchema creates the app's tables the generator writes to, if missing:
// the users table and the chatbot sessions table that CDC publishes.
const AppSchema = `
CREATE TABLE IF NOT EXISTS public.users (
    id         text PRIMARY KEY,
    email      text NOT NULL,
    name       text,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS public.chat_sessions (
    id         text PRIMARY KEY,
    user_id    text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE public.users REPLICA IDENTITY FULL;
`

// EnsureAppSchema creates the app tables in the app database.
func EnsureAppSchema(ctx context.Context, app *pgxpool.Pool) error {
	if _, err := app.Exec(ctx, AppSchema); err != nil {
		return fmt.Errorf("app schema: %w", err)
	}
	return nil
}

// Options configures Drive.
type Options struct {
	// WebhookBase is the pipeline's HTTP address, e.g. http://127.0.0.1:8080.
	WebhookBase  string
	StripeSecret string
	App          *pgxpool.Pool
	Kit          *kitsim.Server    // nil: no Kit subscribers
	Circle       *circlesim.Server // nil: no Circle members
	// LeadTags are the Kit tag ids a newsletter signup starts with.
	LeadTags []int64
	// Duplicates is the fraction of Stripe events delivered a second time.
	Duplicates float64
	// OutOfOrder delivers each customer's events in a random order.
	OutOfOrder bool
	// Forged is the fraction of Stripe events also sent once with a wrong
	// signature (a misconfigured secret, a probe): ingest must refuse them,
	// and the audit trail must count them.
	Forged float64
	// Concurrency is how many customers live at once (default 16).
	Concurrency int
	Seed        uint64
	// Progress, if set, is called after each customer is done.
	Progress func(done, total int)
	Log      *slog.Logger
}

// Report counts what Drive did.
type Report struct {
	Customers  int `json:"customers"`
	Webhooks   int `json:"webhooks_sent"`
	Duplicates int `json:"duplicates_sent"`
	// Retries are re-deliveries after a non-2xx answer, as a provider retries.
	Retries int `json:"retries_after_error"`
	// Failed are deliveries still not accepted after every retry.
	Failed int `json:"failed"`
	// Forged are the deliveries sent with a wrong signature; ForgedRefused
	// those ingest answered 401.
	Forged        int           `json:"forged_sent"`
	ForgedRefused int           `json:"forged_refused"`
	Rejected      map[int]int   `json:"answers_not_2xx"`
	P50, P95      time.Duration `json:"-"`
	P50MS         float64       `json:"p50_ms"`
	P95MS         float64       `json:"p95_ms"`
	Elapsed       time.Duration `json:"-"`
	latencies     []time.Duration
	mu            sync.Mutex
	webhooks      atomic.Int64
	duplicates    atomic.Int64
	retries       atomic.Int64
	failed        atomic.Int64
	forged        atomic.Int64
	refused       atomic.Int64
}

// Drive plays every customer's life against the running pipeline and the
// simulators. It returns when every delivery was accepted or gave up.
func Drive(ctx context.Context, o Options, customers []*Customer) (*Report, error) {
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.App != nil {
		if err := EnsureAppSchema(ctx, o.App); err != nil {
			return nil, err
		}
	}
	rep := &Report{Customers: len(customers), Rejected: map[int]int{}}
	start := time.Now()
	client := &http.Client{Timeout: 10 * time.Second}
	work := make(chan *Customer)
	var done atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, len(customers))
	for w := 0; w < o.Concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(o.Seed, uint64(w)+1))
			for c := range work {
				if err := live(ctx, o, client, rng, rep, c); err != nil {
					errs <- fmt.Errorf("customer %d (%s): %w", c.N, c.Life, err)
				}
				if o.Progress != nil {
					o.Progress(int(done.Add(1)), len(customers))
				}
			}
		}(w)
	}
	for _, c := range customers {
		select {
		case work <- c:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	rep.Webhooks, rep.Duplicates = int(rep.webhooks.Load()), int(rep.duplicates.Load())
	rep.Retries, rep.Failed = int(rep.retries.Load()), int(rep.failed.Load())
	rep.Forged, rep.ForgedRefused = int(rep.forged.Load()), int(rep.refused.Load())
	rep.Elapsed = time.Since(start)
	sort.Slice(rep.latencies, func(i, j int) bool { return rep.latencies[i] < rep.latencies[j] })
	rep.P50, rep.P95 = pct(rep.latencies, 0.50), pct(rep.latencies, 0.95)
	rep.P50MS, rep.P95MS = ms(rep.P50), ms(rep.P95)
	return rep, errors.Join(all...)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func pct(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1))]
}

// live plays one customer: signup in the app database, presence in Kit and
// Circle, then the Stripe events (duplicated and shuffled as configured).
func live(ctx context.Context, o Options, client *http.Client, rng *rand.Rand, rep *Report, c *Customer) error {
	if o.App != nil {
		if _, err := o.App.Exec(ctx, `INSERT INTO public.users (id, email, name) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING`,
			c.UserID, Variant(c.Email, c.N), c.Name); err != nil {
			return fmt.Errorf("signup: %w", err)
		}
		if c.N%3 == 0 {
			if _, err := o.App.Exec(ctx, `INSERT INTO public.chat_sessions (id, user_id) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`,
				"chat_"+c.UserID, c.UserID); err != nil {
				return fmt.Errorf("chat session: %w", err)
			}
		}
	}
	if o.Kit != nil && c.InKit {
		if _, err := o.Kit.AddSubscriber(Variant(c.Email, c.N+2), c.Name, o.LeadTags, nil); err != nil {
			return fmt.Errorf("kit signup: %w", err)
		}
	}
	if o.Circle != nil && c.InCircle {
		if _, err := o.Circle.AddMember(circlesim.MemberSeed{Email: Variant(c.Email, c.N+3), Name: c.Name, SSOUserID: c.UserID}); err != nil {
			return fmt.Errorf("circle join: %w", err)
		}
	}
	events := append([]stripe.Event(nil), c.Events...)
	for _, e := range c.Events {
		if rng.Float64() < o.Duplicates {
			events = append(events, e)
			rep.duplicates.Add(1)
		}
	}
	if o.OutOfOrder {
		rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	}
	for _, e := range events {
		if rng.Float64() < o.Forged {
			if err := forge(ctx, o, client, rep, e); err != nil {
				return err
			}
		}
		if err := deliver(ctx, o, client, rep, e); err != nil {
			return err
		}
	}
	return nil
}

// forge sends e once signed with a secret that is not the endpoint's; ingest
// must answer 401 and store nothing. It is not retried.
func forge(ctx context.Context, o Options, client *http.Client, rep *Report, e stripe.Event) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.WebhookBase+"/webhooks/stripe", bytes.NewReader(e.Body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", stripe.Sign("whsec_forged_"+o.StripeSecret, e.Body, time.Now()))
	rep.forged.Add(1)
	resp, err := client.Do(req)
	if err != nil {
		return nil // a lost forgery is not the pipeline's failure
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		rep.refused.Add(1)
	case http.StatusOK:
		return fmt.Errorf("a delivery with a forged signature was accepted (%s)", e.ID)
	}
	return nil
}

// deliver sends one signed Stripe webhook, retrying as Stripe does (faster)
// while the answer is not 2xx. Each attempt is signed afresh.
func deliver(ctx context.Context, o Options, client *http.Client, rep *Report, e stripe.Event) error {
	backoff := 100 * time.Millisecond
	for attempt := 0; attempt < 10; attempt++ {
		if attempt > 0 {
			rep.retries.Add(1)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			if backoff *= 2; backoff > 3*time.Second {
				backoff = 3 * time.Second
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.WebhookBase+"/webhooks/stripe", bytes.NewReader(e.Body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Stripe-Signature", stripe.Sign(o.StripeSecret, e.Body, time.Now()))
		t0 := time.Now()
		resp, err := client.Do(req)
		lat := time.Since(t0)
		rep.webhooks.Add(1)
		if err != nil {
			rep.count(0)
			continue
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			rep.mu.Lock()
			rep.latencies = append(rep.latencies, lat)
			rep.mu.Unlock()
			return nil
		}
		rep.count(resp.StatusCode)
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			if s, err := strconv.Atoi(ra); err == nil && s > 0 && s < 10 {
				backoff = time.Duration(s) * time.Second
			}
		}
	}
	rep.failed.Add(1)
	return fmt.Errorf("stripe event %s (%s) not accepted after 10 attempts", e.ID, e.Type)
}

func (r *Report) count(code int) {
	r.mu.Lock()
	r.Rejected[code]++
	r.mu.Unlock()
}
