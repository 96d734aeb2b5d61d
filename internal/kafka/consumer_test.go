package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/internal/testenv"
)

// asyncTopic creates a one-partition topic holding n records valued 0..n-1.
func asyncTopic(t *testing.T, n int) (brokers []string, topic string) {
	t.Helper()
	cfg := testenv.Config(t)
	topic = cfg.TopicPrefix + "async"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := kafka.NewClient(cfg.KafkaBrokers)
	if err := cl.EnsureTopics(ctx, []kafka.TopicSpec{{Name: topic, Partitions: 1, Replicas: 1}}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cl.DeleteTopics(context.Background(), topic) })
	p := kafka.NewProducer(cfg.KafkaBrokers, kafka.WriterOptions{})
	defer p.Close()
	msgs := make([]kafka.Message, n)
	for i := range msgs {
		msgs[i] = kafka.Message{Topic: topic, Key: []byte("k"), Value: []byte(strconv.Itoa(i))}
	}
	if err := p.Write(ctx, msgs...); err != nil {
		t.Fatal(err)
	}
	return cfg.KafkaBrokers, topic
}

func valueOf(t *testing.T, m kafka.Message) int {
	n, err := strconv.Atoi(string(m.Value))
	if err != nil {
		t.Errorf("record %q: %v", m.Value, err)
	}
	return n
}

// TestRunAsyncOverlapsAndCommitsInOrder: the handler is called for the next
// batch while the previous batch's wait is still blocked, waits run in fetch
// order, and everything acknowledged is committed (a second consumer of the
// group finds nothing left).
func TestRunAsyncOverlapsAndCommitsInOrder(t *testing.T) {
	brokers, topic := asyncTopic(t, 400)
	group := topic + ".g"
	c := kafka.NewConsumer(kafka.ConsumerOptions{Brokers: brokers, GroupID: group, Topics: []string{topic}, MaxBatch: 100})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	var (
		mu       sync.Mutex
		handled  []int // first value of each batch, in handler order
		waited   []int // first value of each batch, in wait order
		overlaps int   // waits that saw the next batch already handled
		next     = 0
	)
	secondHandled := make(chan struct{})
	err := c.RunAsync(ctx, 2, func(_ context.Context, batch []kafka.Message) (func() error, error) {
		first := valueOf(t, batch[0])
		mu.Lock()
		if first != next {
			t.Errorf("batch starts at %d, want %d", first, next)
		}
		next = valueOf(t, batch[len(batch)-1]) + 1
		handled = append(handled, first)
		if len(handled) == 2 {
			close(secondHandled)
		}
		done := next == 400
		mu.Unlock()
		return func() error {
			if first == 0 {
				// The first batch's outputs "take" until the next batch
				// has been handed over: the two overlap.
				select {
				case <-secondHandled:
				case <-time.After(20 * time.Second):
					return errors.New("the next batch was not handled while the first was in flight")
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(handled) > len(waited)+1 {
				overlaps++
			}
			waited = append(waited, first)
			if done {
				cancel()
			}
			return nil
		}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if fmt.Sprint(waited) != fmt.Sprint(handled) {
		t.Fatalf("waits ran in order %v, handlers in %v", waited, handled)
	}
	if overlaps == 0 {
		t.Fatal("no wait ran while a later batch was already handled")
	}

	// Everything was committed: the group resumes at the end.
	p := kafka.NewProducer(brokers, kafka.WriterOptions{})
	defer p.Close()
	if err := p.Write(context.Background(), kafka.Message{Topic: topic, Key: []byte("k"), Value: []byte("400")}); err != nil {
		t.Fatal(err)
	}
	if got := firstValue(t, brokers, group, topic); got != 400 {
		t.Fatalf("after a clean run the group resumes at %d, want 400", got)
	}
}

// TestRunAsyncFailedWaitIsNotCommitted: a wait that fails stops the consumer
// with its error, and neither that batch nor any later one is committed.
func TestRunAsyncFailedWaitIsNotCommitted(t *testing.T) {
	brokers, topic := asyncTopic(t, 300)
	group := topic + ".g"
	c := kafka.NewConsumer(kafka.ConsumerOptions{Brokers: brokers, GroupID: group, Topics: []string{topic}, MaxBatch: 100})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	boom := errors.New("brokers refused the outputs")
	var failedAt int
	err := c.RunAsync(ctx, 2, func(_ context.Context, batch []kafka.Message) (func() error, error) {
		first := valueOf(t, batch[0])
		return func() error {
			if first > 0 {
				failedAt = first
				return boom
			}
			return nil
		}, nil
	})
	c.Close()
	if !errors.Is(err, boom) {
		t.Fatalf("RunAsync returned %v, want the wait's error", err)
	}
	if failedAt == 0 {
		t.Fatal("the second batch never ran")
	}
	if got := firstValue(t, brokers, group, topic); got != failedAt {
		t.Fatalf("after the failure the group resumes at %d, want %d (the failed batch)", got, failedAt)
	}
}

// firstValue is the value of the first record a new member of group reads.
func firstValue(t *testing.T, brokers []string, group, topic string) int {
	t.Helper()
	c := kafka.NewConsumer(kafka.ConsumerOptions{Brokers: brokers, GroupID: group, Topics: []string{topic}, MaxBatch: 1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := -1
	err := c.Run(ctx, func(_ context.Context, batch []kafka.Message) error {
		got = valueOf(t, batch[0])
		return errors.New("stop")
	})
	if got < 0 {
		t.Fatalf("no record read: %v", err)
	}
	return got
}
