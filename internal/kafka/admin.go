// Package kafka wraps segmentio/kafka-go with the pipeline's defaults: topics
// created idempotently with their configs, writers that wait for all in-sync
// replicas, and consumer-group readers that commit only what the caller acks.
package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	kgo "github.com/segmentio/kafka-go"
)

// TopicSpec is one topic to create.
type TopicSpec struct {
	Name       string
	Partitions int
	Replicas   int
	Configs    map[string]string
}

// Client is an admin client for the cluster at brokers.
type Client struct {
	brokers []string
	c       *kgo.Client
}

// NewClient returns an admin client. It dials lazily.
func NewClient(brokers []string) *Client {
	return &Client{brokers: brokers, c: &kgo.Client{Addr: kgo.TCP(brokers...), Timeout: 15 * time.Second}}
}

// Ping checks that a broker answers a metadata request on a fresh connection
// (the client's transport caches metadata, which would hide a dead broker).
func (c *Client) Ping(ctx context.Context) error {
	var last error
	for _, b := range c.brokers {
		conn, err := (&kgo.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, "tcp", b)
		if err != nil {
			last = err
			continue
		}
		if dl, ok := ctx.Deadline(); ok {
			_ = conn.SetDeadline(dl)
		}
		_, err = conn.Brokers()
		conn.Close()
		if err == nil {
			return nil
		}
		last = err
	}
	return fmt.Errorf("kafka %v: %w", c.brokers, last)
}

// EnsureTopics creates the topics that do not exist and aligns the configs of
// those that do. Safe to run any number of times.
func (c *Client) EnsureTopics(ctx context.Context, specs []TopicSpec) error {
	var req kgo.CreateTopicsRequest
	for _, s := range specs {
		var entries []kgo.ConfigEntry
		for k, v := range s.Configs {
			entries = append(entries, kgo.ConfigEntry{ConfigName: k, ConfigValue: v})
		}
		req.Topics = append(req.Topics, kgo.TopicConfig{
			Topic: s.Name, NumPartitions: s.Partitions, ReplicationFactor: s.Replicas, ConfigEntries: entries,
		})
	}
	if len(req.Topics) == 0 {
		return nil
	}
	res, err := c.c.CreateTopics(ctx, &req)
	if err != nil {
		return fmt.Errorf("create topics: %w", err)
	}
	var alter kgo.IncrementalAlterConfigsRequest
	for _, s := range specs {
		err := res.Errors[s.Name]
		switch {
		case err == nil:
		case errors.Is(err, kgo.TopicAlreadyExists):
			if len(s.Configs) > 0 {
				r := kgo.IncrementalAlterConfigsRequestResource{ResourceType: kgo.ResourceTypeTopic, ResourceName: s.Name}
				for k, v := range s.Configs {
					r.Configs = append(r.Configs, kgo.IncrementalAlterConfigsRequestConfig{Name: k, Value: v, ConfigOperation: kgo.ConfigOperationSet})
				}
				alter.Resources = append(alter.Resources, r)
			}
		default:
			return fmt.Errorf("create topic %s: %w", s.Name, err)
		}
	}
	if len(alter.Resources) > 0 {
		ares, err := c.c.IncrementalAlterConfigs(ctx, &alter)
		if err != nil {
			return fmt.Errorf("align topic configs: %w", err)
		}
		for _, r := range ares.Resources {
			if r.Error != nil {
				return fmt.Errorf("align config of %s: %w", r.ResourceName, r.Error)
			}
		}
	}
	return c.waitForLeaders(ctx, specs)
}

// waitForLeaders blocks until every partition of the topics has a leader, so a
// writer started right after migrate does not fail on a fresh topic.
func (c *Client) waitForLeaders(ctx context.Context, specs []TopicSpec) error {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := c.c.Metadata(ctx, &kgo.MetadataRequest{Topics: names})
		ok := err == nil
		if ok {
			for _, t := range md.Topics {
				if t.Error != nil {
					ok = false
					break
				}
				for _, p := range t.Partitions {
					if p.Error != nil || p.Leader.Host == "" {
						ok = false
					}
				}
			}
		}
		// Metadata can name a leader before that broker serves the
		// partition (a fresh KRaft broker answers NOT_LEADER for a moment):
		// a ListOffsets on every partition proves each one is served.
		if ok {
			for _, n := range names {
				if _, lerr := c.EndOffsets(ctx, n); lerr != nil {
					ok, err = false, lerr
					break
				}
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("topics %v have no leader after 30s (last error: %v)", names, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// TopicConfigs returns the non-default configs of a topic as the broker reports them.
func (c *Client) TopicConfigs(ctx context.Context, topic string) (map[string]string, error) {
	res, err := c.c.DescribeConfigs(ctx, &kgo.DescribeConfigsRequest{
		Resources: []kgo.DescribeConfigRequestResource{{ResourceType: kgo.ResourceTypeTopic, ResourceName: topic}},
	})
	if err != nil {
		return nil, fmt.Errorf("describe %s: %w", topic, err)
	}
	out := map[string]string{}
	for _, r := range res.Resources {
		if r.Error != nil {
			return nil, fmt.Errorf("describe %s: %w", topic, r.Error)
		}
		for _, e := range r.ConfigEntries {
			out[e.ConfigName] = e.ConfigValue
		}
	}
	return out, nil
}

// Partitions returns the partition count of a topic (0 when it does not exist).
func (c *Client) Partitions(ctx context.Context, topic string) (int, error) {
	md, err := c.c.Metadata(ctx, &kgo.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return 0, err
	}
	for _, t := range md.Topics {
		if t.Name == topic {
			if t.Error != nil {
				if errors.Is(t.Error, kgo.UnknownTopicOrPartition) {
					return 0, nil
				}
				return 0, t.Error
			}
			return len(t.Partitions), nil
		}
	}
	return 0, nil
}

// EndOffsets returns the next offset of every partition of topic (its high watermark).
func (c *Client) EndOffsets(ctx context.Context, topic string) (map[int]int64, error) {
	n, err := c.Partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	req := &kgo.ListOffsetsRequest{Topics: map[string][]kgo.OffsetRequest{}}
	for p := 0; p < n; p++ {
		req.Topics[topic] = append(req.Topics[topic], kgo.LastOffsetOf(p))
	}
	res, err := c.c.ListOffsets(ctx, req)
	if err != nil {
		return nil, err
	}
	out := map[int]int64{}
	for _, po := range res.Topics[topic] {
		if po.Error != nil {
			return nil, po.Error
		}
		out[po.Partition] = po.LastOffset
	}
	return out, nil
}

// DeleteTopics removes topics (tests clean up after themselves with it).
func (c *Client) DeleteTopics(ctx context.Context, names ...string) error {
	_, err := c.c.DeleteTopics(ctx, &kgo.DeleteTopicsRequest{Topics: names})
	return err
}

// Reachable reports whether a TCP connection to any broker succeeds, fast.
func Reachable(brokers []string, timeout time.Duration) bool {
	for _, b := range brokers {
		conn, err := net.DialTimeout("tcp", b, timeout)
		if err == nil {
			conn.Close()
			return true
		}
	}
	return false
}

// Itoa is strconv.Itoa, kept here so callers building configs need not import strconv.
func Itoa(n int64) string { return strconv.FormatInt(n, 10) }
