package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	kgo "github.com/segmentio/kafka-go"

	"github.com/launchready/launchready/schemas"
)

// Message is kafka-go's message; the alias keeps callers off the import.
type Message = kgo.Message

// Header is kafka-go's record header.
type Header = kgo.Header

// ErrUnavailable wraps every write failure: the records may not be stored, so
// the caller must not acknowledge its own input (answer 503, keep the LSN, …).
var ErrUnavailable = errors.New("kafka unavailable")

// WriterOptions tunes a Producer; the zero value is the pipeline's default.
type WriterOptions struct {
	// BatchTimeout bounds how long a record waits for others to share its
	// produce request. Concurrent callers are batched together.
	BatchTimeout time.Duration
	BatchSize    int
	// MaxAttempts per batch before Write fails.
	MaxAttempts int
}

// Producer writes records to any topic and returns only once every in-sync
// replica has them (acks=all). Safe for concurrent use; concurrent Write calls
// share produce requests.
type Producer struct {
	w *kgo.Writer
}

// NewProducer returns a Producer for the brokers.
func NewProducer(brokers []string, o WriterOptions) *Producer {
	if o.BatchTimeout == 0 {
		o.BatchTimeout = 2 * time.Millisecond
	}
	if o.BatchSize == 0 {
		o.BatchSize = 2000
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 3
	}
	return &Producer{w: &kgo.Writer{
		Addr:                   kgo.TCP(brokers...),
		Balancer:               &kgo.Murmur2Balancer{Consistent: true},
		RequiredAcks:           kgo.RequireAll,
		BatchTimeout:           o.BatchTimeout,
		BatchSize:              o.BatchSize,
		BatchBytes:             1 << 20, // the broker's default message.max.bytes
		MaxAttempts:            o.MaxAttempts,
		WriteBackoffMin:        50 * time.Millisecond,
		WriteBackoffMax:        500 * time.Millisecond,
		ReadTimeout:            10 * time.Second,
		WriteTimeout:           10 * time.Second,
		AllowAutoTopicCreation: false,
	}}
}

// Write blocks until every message is acknowledged by all in-sync replicas,
// or fails with an error wrapping ErrUnavailable. Not idempotent: a retry after
// an error may store a record twice, which consumers detect by record identity.
func (p *Producer) Write(ctx context.Context, msgs ...Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := p.w.WriteMessages(ctx, msgs...); err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return nil
}

// Close flushes and closes the writer.
func (p *Producer) Close() error { return p.w.Close() }

// Stats returns the writer's counters since the last call.
func (p *Producer) Stats() kgo.WriterStats { return p.w.Stats() }

// JSON builds a message whose value is v encoded as JSON, with the envelope header.
func JSON(topic, key, envelope string, v any) (Message, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return Message{}, fmt.Errorf("encode %s record: %w", envelope, err)
	}
	return Message{
		Topic:   topic,
		Key:     []byte(key),
		Value:   b,
		Headers: []Header{{Key: schemas.HeaderEnvelope, Value: []byte(envelope)}},
	}, nil
}

// HeaderValue returns the value of the first header named key.
func HeaderValue(m Message, key string) string {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
