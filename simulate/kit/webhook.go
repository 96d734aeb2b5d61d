package kitsim

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Webhook event types. Kit confirms subscriber.created and
// subscriber.unsubscribed; tag events exist but their names in the current
// webhook system are not confirmed: these follow the legacy names.
const (
	EventSubscriberCreated      = "subscriber.created"
	EventSubscriberUnsubscribed = "subscriber.unsubscribed"
	EventTagAdd                 = "subscriber.tag_add"    // name unconfirmed
	EventTagRemove              = "subscriber.tag_remove" // name unconfirmed
)

// Event is one event of a delivery.
type Event struct {
	ID      string         `json:"id"`
	Type    string         `json:"type"`
	Created string         `json:"created"`
	Data    map[string]any `json:"data"`
}

// Delivery is the body Kit posts: 1 to 100 events of one type.
type Delivery struct {
	DeliveryID int64   `json:"delivery_id"`
	Events     []Event `json:"events"`
}

// Sign returns the X-Kit-Signature value of body at t:
// t=<unix>,v1=hex(HMAC-SHA256(secret, "<t>.<body>")).
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts + "."))
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// emit queues an event about sub (and tag t, for tag events). The caller
// holds s.mu. A full queue drops the event and counts it.
func (s *Server) emit(typ string, sub *subscriber, t *Tag) {
	if s.hooks == nil {
		return
	}
	data := map[string]any{"subscriber": s.json(sub)}
	if t != nil {
		data["tag"] = map[string]any{"id": t.ID, "name": t.Name}
	}
	ev := Event{ID: uuid4(), Type: typ, Created: s.now().UTC().Format(time.RFC3339), Data: data}
	select {
	case s.hooks.in <- ev:
		s.stats.WebhookEvents++
	default:
		s.stats.WebhookQueueFull++
	}
}

type webhooks struct {
	s      *Server
	in     chan Event
	ctx    context.Context
	cancel context.CancelFunc
	client *http.Client
	wg     sync.WaitGroup

	mu     sync.Mutex
	nextID int64
	timers map[*time.Timer]struct{}
}

func newWebhooks(s *Server) *webhooks {
	ctx, cancel := context.WithCancel(context.Background())
	h := &webhooks{s: s, in: make(chan Event, 10000), ctx: ctx, cancel: cancel, client: &http.Client{Timeout: 10 * time.Second}, nextID: 770000, timers: map[*time.Timer]struct{}{}}
	h.wg.Add(1)
	go h.batch()
	return h
}

// batch gathers events of one type for up to WebhookBatch (or 100 events)
// and hands each batch to a delivery.
func (h *webhooks) batch() {
	defer h.wg.Done()
	pending := map[string][]Event{}
	var tick <-chan time.Time
	flush := func(typ string) {
		if evs := pending[typ]; len(evs) > 0 {
			delete(pending, typ)
			h.mu.Lock()
			h.nextID++
			d := Delivery{DeliveryID: h.nextID, Events: evs}
			h.mu.Unlock()
			h.attempt(d, 0)
		}
	}
	for {
		select {
		case <-h.ctx.Done():
			return
		case ev := <-h.in:
			pending[ev.Type] = append(pending[ev.Type], ev)
			if len(pending[ev.Type]) >= 100 {
				flush(ev.Type)
			}
			if tick == nil {
				tick = time.After(h.s.opt.WebhookBatch)
			}
		case <-tick:
			tick = nil
			for typ := range pending {
				flush(typ)
			}
		}
	}
}

// attempt sends d in the background; on failure it schedules the next
// attempt after Kit's retry wait (or Retry-After on 429/503). A 410 stops.
func (h *webhooks) attempt(d Delivery, n int) {
	body, err := json.Marshal(d)
	if err != nil {
		h.s.log.Error("kit simulator: encode delivery", "err", err)
		return
	}
	h.mu.Lock()
	if h.ctx.Err() != nil {
		h.mu.Unlock()
		return
	}
	h.wg.Add(1) // under mu, so close never waits while an attempt is being added
	h.mu.Unlock()
	go func() {
		defer h.wg.Done()
		status, retryAfter, err := h.post(body)
		h.s.mu.Lock()
		h.s.stats.WebhookAttempts++
		ok := err == nil && status >= 200 && status < 300
		if ok {
			h.s.stats.WebhooksSent++
		}
		h.s.mu.Unlock()
		if ok || h.ctx.Err() != nil {
			return
		}
		if status == http.StatusGone || n >= len(h.s.opt.WebhookRetries) {
			h.s.mu.Lock()
			h.s.stats.WebhooksDropped++
			h.s.mu.Unlock()
			h.s.log.Warn("kit simulator: webhook delivery abandoned", "delivery_id", d.DeliveryID, "status", status, "attempts", n+1)
			return
		}
		wait := h.s.opt.WebhookRetries[n]
		if retryAfter > 0 {
			wait = retryAfter
		}
		h.later(wait, func() { h.attempt(d, n+1) })
	}()
}

func (h *webhooks) post(body []byte) (int, time.Duration, error) {
	req, err := http.NewRequestWithContext(h.ctx, http.MethodPost, h.s.opt.WebhookURL, bytes.NewReader(body))
	if err != nil {
		return 0, 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Kit-Webhooks (launchready simulator)")
	req.Header.Set("X-Kit-Signature", Sign(h.s.opt.WebhookSecret, h.s.now(), body))
	resp, err := h.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	var ra time.Duration
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		if secs, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && secs >= 0 {
			ra = time.Duration(secs) * time.Second
		}
	}
	return resp.StatusCode, ra, nil
}

func (h *webhooks) later(d time.Duration, f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ctx.Err() != nil {
		return
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		h.mu.Lock()
		delete(h.timers, t)
		h.mu.Unlock()
		f()
	})
	h.timers[t] = struct{}{}
}

func (h *webhooks) close() {
	h.mu.Lock()
	h.cancel()
	for t := range h.timers {
		t.Stop()
	}
	h.timers = map[*time.Timer]struct{}{}
	h.mu.Unlock()
	h.wg.Wait()
}

// uuid4 returns a random RFC 4122 version 4 UUID, the form of Kit's event ids.
func uuid4() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
