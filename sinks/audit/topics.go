package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	kgo "github.com/segmentio/kafka-go"
)

// listTopics returns the audit topics that exist on the broker, sorted: the
// pipeline's own topics (schemas.Topics, those holding audit records) and
// every lr.cdc.* topic. CDC topics appear when the CDC stage publishes a
// table, and kafka-go's consumer group subscribes to a fixed list, so the
// writer lists them from broker metadata at start and every TopicRefresh
// (watchTopics), and resubscribes when the list changed. A new topic is read
// from its first record: nothing written before the writer noticed it is lost.
func (w *Writer) listTopics(ctx context.Context) ([]string, error) {
	cl := &kgo.Client{Addr: kgo.TCP(w.env.Cfg.KafkaBrokers...), Timeout: 10 * time.Second}
	md, err := cl.Metadata(ctx, &kgo.MetadataRequest{}) // no topic names: all topics
	if err != nil {
		return nil, fmt.Errorf("list topics: %w", err)
	}
	var out []string
	for _, t := range md.Topics {
		if t.Error == nil && !t.Internal && w.dec.kindOf(t.Name) != kindNone {
			out = append(out, t.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// watchTopics calls changed once the broker's audit topics differ from
// current, checking every TopicRefresh until ctx ends.
func (w *Writer) watchTopics(ctx context.Context, current []string, changed func()) {
	t := time.NewTicker(w.opt.TopicRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		topics, err := w.listTopics(ctx)
		if err != nil {
			if ctx.Err() == nil {
				w.log.WarnContext(ctx, "cannot refresh the topic list", "err", err)
			}
			continue
		}
		if !slices.Equal(topics, current) {
			w.log.InfoContext(ctx, "audit topics changed, resubscribing", "topics", topics)
			changed()
			return
		}
	}
}

// ErrSchema is returned when the ClickHouse database lacks a table or column
// the writer inserts into.
var ErrSchema = errors.New("the ClickHouse audit schema does not match this version")

// checkSchema verifies that every table and column the writer inserts into
// exists, so a database migrated with an older DDL fails at start with a
// clear message rather than on the first insert.
func checkSchema(ctx context.Context, q Querier, db string) error {
	rows, err := q.Query(ctx, "SELECT table, name FROM system.columns WHERE database = ?", db)
	if err != nil {
		return fmt.Errorf("read the schema of %s: %w", db, err)
	}
	defer rows.Close()
	have := map[string]bool{}
	for rows.Next() {
		var t, c string
		if err := rows.Scan(&t, &c); err != nil {
			return err
		}
		have[t+"."+c] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	var missing []string
	for _, t := range (&batch{}).tables() {
		for _, c := range t.columns() {
			if !have[t.name()+"."+c.name] {
				missing = append(missing, t.name()+"."+c.name)
			}
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: database %s lacks %s: run `launchready migrate` (a database migrated with an older draft of the audit DDL must be dropped first)",
			ErrSchema, db, strings.Join(missing, ", "))
	}
	return nil
}
