package testenv

import (
	"context"
	"testing"
	"time"

	"github.com/launchready/launchready/internal/kafka"
)

func TestPrivateKafkaStopsAndStarts(t *testing.T) {
	t.Parallel()
	k := PrivateKafka(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := kafka.NewClient([]string{k.Addr})
	if err := cl.Ping(ctx); err != nil {
		t.Fatalf("private kafka does not answer: %v", err)
	}
	k.Stop()
	if kafka.Reachable([]string{k.Addr}, time.Second) {
		t.Fatal("private kafka still reachable after Stop")
	}
	k.Start()
	if err := cl.Ping(ctx); err != nil {
		t.Fatalf("private kafka does not answer after restart: %v", err)
	}
}
