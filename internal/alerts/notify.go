package alerts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Notifier posts transitions to a Slack-compatible incoming webhook. Posts
// that fail stay queued, in order, and are retried at the next Flush, so
// every transition is posted once it can be (and a later transition of the
// same alert never overtakes an earlier one).
type Notifier struct {
	url    string
	client *http.Client
	queue  []Transition
}

// NewNotifier returns a Notifier posting to url; an empty url only queues
// nothing (transitions are logged by the evaluator and dropped here).
func NewNotifier(url string, timeout time.Duration) *Notifier {
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &Notifier{url: url, client: &http.Client{Timeout: timeout}}
}

// Enqueue adds transitions to the queue. Not safe for concurrent use.
func (n *Notifier) Enqueue(ts ...Transition) {
	if n.url == "" {
		return
	}
	n.queue = append(n.queue, ts...)
}

// Pending is the number of queued transitions.
func (n *Notifier) Pending() int { return len(n.queue) }

// Flush posts the queue in order and stops at the first failure, which it
// returns; what was posted is removed. It blocks for at most one request
// timeout per queued transition.
func (n *Notifier) Flush(ctx context.Context) error {
	for len(n.queue) > 0 {
		if err := n.post(ctx, n.queue[0]); err != nil {
			return fmt.Errorf("alert webhook: %d transition(s) queued: %w", len(n.queue), err)
		}
		n.queue = n.queue[1:]
	}
	return nil
}

// Payload is the Slack-compatible body: Slack, Mattermost, Rocket.Chat and
// most chat webhooks accept {"text": …}; the structured fields ride along
// for receivers that want them.
type Payload struct {
	Text       string     `json:"text"`
	Transition Transition `json:"launchready"`
}

func (n *Notifier) post(ctx context.Context, t Transition) error {
	body, err := json.Marshal(Payload{Text: Message(t), Transition: t})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.client.Do(req)
	if err != nil {
		return scrubURL(err, n.url)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("receiver answered %s", resp.Status)
	}
	return nil
}

// scrubURL keeps the webhook URL (whose path is its credential) out of errors.
func scrubURL(err error, url string) error {
	if url == "" {
		return err
	}
	return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), url, "[alert webhook]"))
}

// Message is the one-line text of a transition.
func Message(t Transition) string {
	var b strings.Builder
	if t.State == StateFiring {
		b.WriteString(":rotating_light: FIRING ")
	} else {
		b.WriteString(":white_check_mark: RESOLVED ")
	}
	b.WriteString(t.Alert)
	if t.Labels != "" {
		b.WriteString(" (" + t.Labels + ")")
	}
	b.WriteString(": " + t.Summary)
	if t.Text != "" {
		b.WriteString(" — " + t.Text)
	}
	if t.State == StateResolved && !t.Since.IsZero() {
		b.WriteString(fmt.Sprintf(" (fired %s, lasted %s)", t.Since.UTC().Format("2006-01-02 15:04 UTC"), t.At.Sub(t.Since).Round(time.Second)))
	}
	return b.String()
}
