package alerts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	kgo "github.com/segmentio/kafka-go"
)

// BacklogSource reports each consumer group's backlog: records in its
// topics after its committed offsets.
type BacklogSource interface {
	Backlog(ctx context.Context) (map[string]int64, error)
}

// KafkaBacklog measures the backlog of the consumer groups whose id starts
// with Prefix (the pipeline's topic prefix: lr.audit, lr.sink.kit, …).
type KafkaBacklog struct {
	Prefix string
	client *kgo.Client
}

// NewKafkaBacklog returns a BacklogSource for the cluster at brokers.
func NewKafkaBacklog(brokers []string, prefix string) *KafkaBacklog {
	return &KafkaBacklog{Prefix: prefix, client: &kgo.Client{Addr: kgo.TCP(brokers...), Timeout: 10 * time.Second}}
}

// Backlog lists the groups, their committed offsets and their topics' end
// offsets. A partition with no committed offset counts from 0.
func (k *KafkaBacklog) Backlog(ctx context.Context) (map[string]int64, error) {
	groups, err := k.client.ListGroups(ctx, &kgo.ListGroupsRequest{})
	if err != nil {
		return nil, fmt.Errorf("kafka: list groups: %w", err)
	}
	out := map[string]int64{}
	ends := map[string]map[int]int64{}
	for _, g := range groups.Groups {
		if !strings.HasPrefix(g.GroupID, k.Prefix) {
			continue
		}
		res, err := k.client.OffsetFetch(ctx, &kgo.OffsetFetchRequest{GroupID: g.GroupID})
		if err != nil {
			return nil, fmt.Errorf("kafka: offsets of %s: %w", g.GroupID, err)
		}
		var lag int64
		for topic, parts := range res.Topics {
			if ends[topic] == nil {
				if ends[topic], err = k.endOffsets(ctx, topic, parts); err != nil {
					return nil, err
				}
			}
			for _, p := range parts {
				if p.Error != nil {
					continue
				}
				if d := ends[topic][p.Partition] - max(p.CommittedOffset, 0); d > 0 {
					lag += d
				}
			}
		}
		out[g.GroupID] = lag
	}
	return out, nil
}

func (k *KafkaBacklog) endOffsets(ctx context.Context, topic string, parts []kgo.OffsetFetchPartition) (map[int]int64, error) {
	req := &kgo.ListOffsetsRequest{Topics: map[string][]kgo.OffsetRequest{}}
	for _, p := range parts {
		req.Topics[topic] = append(req.Topics[topic], kgo.LastOffsetOf(p.Partition))
	}
	res, err := k.client.ListOffsets(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("kafka: end offsets of %s: %w", topic, err)
	}
	out := map[int]int64{}
	for _, po := range res.Topics[topic] {
		if po.Error == nil {
			out[po.Partition] = po.LastOffset
		}
	}
	return out, nil
}

// SlotLagSource reports the WAL bytes each logical replication slot is behind.
type SlotLagSource interface {
	SlotLag(ctx context.Context) (map[string]int64, error)
}

// PostgresSlotLag reads pg_replication_slots of the app database.
type PostgresSlotLag struct {
	Pool  *pgxpool.Pool
	Slots []string // the slots to watch; empty: every logical slot
}

// SlotLag is pg_current_wal_lsn() minus each slot's confirmed_flush_lsn.
func (p *PostgresSlotLag) SlotLag(ctx context.Context) (map[string]int64, error) {
	rows, err := p.Pool.Query(ctx, `SELECT slot_name::text, COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn), 0)::bigint
		FROM pg_replication_slots WHERE slot_type = 'logical' AND (cardinality($1::text[]) = 0 OR slot_name::text = ANY($1::text[]))`, p.Slots)
	if err != nil {
		return nil, fmt.Errorf("postgres: replication slots: %w", err)
	}
	out := map[string]int64{}
	var name string
	var lag int64
	_, err = pgx.ForEachRow(rows, []any{&name, &lag}, func() error { out[name] = lag; return nil })
	if err != nil {
		return nil, fmt.Errorf("postgres: replication slots: %w", err)
	}
	return out, nil
}

// RejectedSource reports, per provider, webhook deliveries that failed before
// reaching Kafka (refused, or answered 503) and all deliveries, within the
// last window.
type RejectedSource interface {
	Failed(ctx context.Context, now time.Time, window time.Duration) (failed, received map[string]int64, err error)
}

// MetricsScraper reads the pipeline's /metrics and turns the ingest counters
// into increases over a window, from the samples it took at earlier calls
// (like Prometheus' increase(), without extrapolation; counter resets are
// handled). Until it has a sample as old as the window it reports the
// increase since its first sample.
type MetricsScraper struct {
	URL    string
	client *http.Client

	mu      sync.Mutex
	samples []counterSample
}

type counterSample struct {
	at               time.Time
	failed, received map[string]float64
}

// NewMetricsScraper returns a scraper of url (http://host:port/metrics).
func NewMetricsScraper(url string) *MetricsScraper {
	return &MetricsScraper{URL: url, client: &http.Client{Timeout: 5 * time.Second}}
}

// Failed scrapes once and returns the increases over the window.
func (m *MetricsScraper) Failed(ctx context.Context, now time.Time, window time.Duration) (map[string]int64, map[string]int64, error) {
	s, err := m.scrape(ctx)
	if err != nil {
		return nil, nil, err
	}
	s.at = now
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples = append(m.samples, s)
	// Keep the newest sample at or before the window's start, and all after.
	start := now.Add(-window)
	i := sort.Search(len(m.samples), func(i int) bool { return m.samples[i].at.After(start) })
	if i > 0 {
		m.samples = m.samples[i-1:]
	}
	return increase(m.samples, func(c counterSample) map[string]float64 { return c.failed }),
		increase(m.samples, func(c counterSample) map[string]float64 { return c.received }), nil
}

func increase(ss []counterSample, get func(counterSample) map[string]float64) map[string]int64 {
	out := map[string]int64{}
	for i := 1; i < len(ss); i++ {
		prev, cur := get(ss[i-1]), get(ss[i])
		for p, v := range cur {
			d := v - prev[p]
			if v < prev[p] { // the counter was reset: the process restarted
				d = v
			}
			out[p] += int64(d + 0.5)
		}
	}
	return out
}

var errNoCounters = errors.New("no launchready_ingest_received_total in the metrics (is ingest running there?)")

func (m *MetricsScraper) scrape(ctx context.Context) (counterSample, error) {
	s := counterSample{failed: map[string]float64{}, received: map[string]float64{}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL, nil)
	if err != nil {
		return s, fmt.Errorf("metrics: %w", err)
	}
	req.Header.Set("Accept", "text/plain; version=0.0.4")
	resp, err := m.client.Do(req)
	if err != nil {
		return s, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("metrics: %s answered %s", m.URL, resp.Status)
	}
	return parseCounters(resp.Body)
}

// parseCounters reads the ingest counters, summed per provider, from a
// Prometheus text exposition.
func parseCounters(r io.Reader) (counterSample, error) {
	s := counterSample{failed: map[string]float64{}, received: map[string]float64{}}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	fams, err := parser.TextToMetricFamilies(io.LimitReader(r, 16<<20))
	if err != nil {
		return s, fmt.Errorf("metrics: %w", err)
	}
	add := func(name string, into map[string]float64) {
		for _, mt := range fams[name].GetMetric() {
			for _, l := range mt.GetLabel() {
				if l.GetName() == "provider" {
					into[l.GetValue()] += mt.GetCounter().GetValue() + mt.GetUntyped().GetValue()
				}
			}
		}
	}
	if fams["launchready_ingest_received_total"] == nil {
		return s, errNoCounters
	}
	add("launchready_ingest_received_total", s.received)
	add("launchready_ingest_rejected_total", s.failed)
	add("launchready_ingest_unavailable_total", s.failed)
	return s, nil
}
