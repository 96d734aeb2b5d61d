package audit

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
)

// kind is the record type a topic holds.
type kind int

const (
	kindNone kind = iota
	kindRaw
	kindCDC
	kindIdentity
	kindEntitlement
	kindDecision
	kindMismatch
	kindSink
	kindDLQ
	kindRejection
)

// kindByEnvelope maps schemas.Topic.Envelope to the record kind; envelopes
// not listed (the reconciler's own SeenEvent state) are not audit records.
var kindByEnvelope = map[string]kind{
	"RawEvent":    kindRaw,
	"Change":      kindCDC,
	"Identity":    kindIdentity,
	"Entitlement": kindEntitlement,
	"Decision":    kindDecision,
	"Mismatch":    kindMismatch,
	"SinkResult":  kindSink,
	"DeadLetter":  kindDLQ,
	"Rejection":   kindRejection,
}

// decoder turns Kafka records into table rows.
type decoder struct {
	red       *Redactor
	kinds     map[string]kind // full topic name → kind
	cdcPrefix string          // full prefix of the CDC topics
}

func newDecoder(red *Redactor, prefix string) *decoder {
	d := &decoder{red: red, kinds: map[string]kind{}, cdcPrefix: prefix + "cdc."}
	for _, t := range schemas.Topics {
		if k, ok := kindByEnvelope[t.Envelope]; ok {
			d.kinds[prefix+t.Name] = k
		}
	}
	return d
}

func (d *decoder) kindOf(topic string) kind {
	if k, ok := d.kinds[topic]; ok {
		return k
	}
	if strings.HasPrefix(topic, d.cdcPrefix) {
		return kindCDC
	}
	return kindNone
}

// reserve sizes b's columns for msgs, so decoding them appends without
// regrowing: a table gets room for its records, the keys table (one row per
// further key a record names) room for one row per record.
func (d *decoder) reserve(b *batch, msgs []kafka.Message) {
	var n [kindRejection + 1]int
	for i := range msgs {
		n[d.kindOf(msgs[i].Topic)]++
	}
	for k, t := range map[kind]table{kindRaw: &b.raw, kindCDC: &b.cdc, kindIdentity: &b.identity, kindEntitlement: &b.entitlements,
		kindDecision: &b.decisions, kindMismatch: &b.mismatches, kindSink: &b.sinks, kindRejection: &b.rejections} {
		reserveTable(t, n[k])
	}
	reserveTable(&b.keys, len(msgs))
}

// add decodes m into b. A record that cannot be decoded becomes a dlq row of
// stage "audit" (with its Kafka position), so nothing read is lost silently.
func (d *decoder) add(b *batch, m *kafka.Message) {
	var err error
	switch d.kindOf(m.Topic) {
	case kindRaw:
		err = d.raw(b, m)
	case kindCDC:
		err = d.cdc(b, m)
	case kindIdentity:
		err = d.identity(b, m)
	case kindEntitlement:
		err = d.entitlement(b, m)
	case kindDecision:
		err = d.decision(b, m)
	case kindMismatch:
		err = d.mismatch(b, m)
	case kindSink:
		err = d.sink(b, m)
	case kindDLQ:
		err = d.deadLetter(b, m)
	case kindRejection:
		err = d.rejection(b, m)
	default:
		err = fmt.Errorf("topic %s holds no audit record", m.Topic)
	}
	if err != nil {
		d.undecodable(b, m, err)
	}
}

// checkVersion refuses an envelope newer than this code knows rather than
// guess at its fields. A missing version (0) reads as version 1.
func checkVersion(v, known int) error {
	if v > known {
		return fmt.Errorf("envelope version %d is newer than %d", v, known)
	}
	return nil
}

func (d *decoder) undecodable(b *batch, m *kafka.Message, cause error) {
	record := ""
	if out, err := d.red.Redact(m.Value); err == nil {
		record = string(out)
	}
	t := &b.dlq
	t.base.add(m.Time)
	t.customerKey = append(t.customerKey, "")
	t.recordID = append(t.recordID, "audit:"+m.Topic+"/"+strconv.Itoa(m.Partition)+"/"+strconv.FormatInt(m.Offset, 10))
	t.stage = append(t.stage, "audit")
	t.sourceTopic = append(t.sourceTopic, m.Topic)
	t.recordKey = append(t.recordKey, string(m.Key))
	t.reason = append(t.reason, "undecodable: "+cause.Error())
	t.record = append(t.record, record)
	t.origin.add(m)
	undecodableTotal.Inc()
}

// redactOptional redacts an optional JSON document ("" when absent or null).
func (d *decoder) redactOptional(b *batch, doc json.RawMessage, v visitor) (string, error) {
	if len(doc) == 0 || string(doc) == "null" {
		return "", nil
	}
	out, err := d.red.scanWith(doc, v, b.verdictMap())
	if err != nil {
		return "", err
	}
	return ownedString(out), nil
}

func (d *decoder) identity(b *batch, m *kafka.Message) error {
	id, err := decodeIdentity(m.Value)
	if err != nil {
		return err
	}
	if err := checkVersion(id.V, 1); err != nil {
		return err
	}
	if id.CustomerID == "" {
		return fmt.Errorf("identity without customer_id")
	}
	at := orTime(id.UpdatedAt, m.Time)
	recordID := id.CustomerID + "@v" + strconv.FormatInt(id.Version, 10)
	t := &b.identity
	seen := map[string]bool{}
	link := func(kind, key string) {
		if key == "" || seen[kind+"\x00"+key] {
			return
		}
		seen[kind+"\x00"+key] = true
		t.base.add(at)
		t.key = append(t.key, key)
		t.kind = append(t.kind, kind)
		t.customerID = append(t.customerID, id.CustomerID)
		t.version = append(t.version, id.Version)
		t.recordID = append(t.recordID, recordID)
		t.email = append(t.email, normEmail(id.Email))
		t.userID = append(t.userID, id.UserID)
		t.mergedInto = append(t.mergedInto, id.MergedInto)
		t.origin.add(m)
	}
	link("customer", id.CustomerID)
	link("email", normEmail(id.Email))
	for _, e := range id.Emails {
		link("email", normEmail(e))
	}
	link("user", id.UserID)
	for _, k := range id.Stripe {
		link("stripe", k)
	}
	for _, k := range id.Circle {
		link("circle", k)
	}
	for _, k := range id.Kit {
		link("kit", k)
	}
	for _, k := range id.Sessions {
		link("session", k)
	}
	link("merged_into", id.MergedInto)
	return nil
}

func (d *decoder) entitlement(b *batch, m *kafka.Message) error {
	e, err := decodeEntitlement(m.Value)
	if err != nil {
		return err
	}
	if err := checkVersion(e.V, schemas.EntitlementVersion); err != nil {
		return err
	}
	if e.CustomerID == "" {
		return fmt.Errorf("entitlement without customer_id")
	}
	at := orTime(e.UpdatedAt, m.Time)
	latency := int64(0)
	if !e.IngestedAt.IsZero() {
		published := orTime(m.Time, e.UpdatedAt)
		latency = max(published.Sub(e.IngestedAt).Milliseconds(), 0)
	}
	t := &b.entitlements
	t.base.add(at)
	t.customerID = append(t.customerID, e.CustomerID)
	t.version = append(t.version, e.Version)
	t.recordID = append(t.recordID, e.CustomerID+"@v"+strconv.FormatInt(e.Version, 10))
	t.email = append(t.email, normEmail(e.Email))
	t.userID = append(t.userID, e.UserID)
	t.plan = append(t.plan, e.Plan)
	t.status = append(t.status, e.Status)
	t.access = append(t.access, boolByte(e.Access))
	t.periodEndMS = append(t.periodEndMS, msOfPtr(e.CurrentPeriodEnd))
	t.graceUntilMS = append(t.graceUntilMS, msOfPtr(e.GraceUntil))
	t.flagged = append(t.flagged, boolByte(e.Flagged))
	t.flagReason = append(t.flagReason, e.FlagReason)
	t.sourceEventIDs = append(t.sourceEventIDs, nonNil(e.SourceEventIDs))
	t.lastEventMS = append(t.lastEventMS, msOf(e.LastEventAt))
	t.ingestedMS = append(t.ingestedMS, msOf(e.IngestedAt))
	t.latencyMS = append(t.latencyMS, latency)
	t.circleIDs = append(t.circleIDs, nonNil(e.CircleMemberIDs))
	t.kitIDs = append(t.kitIDs, nonNil(e.KitSubscriberIDs))
	t.deleted = append(t.deleted, boolByte(e.Deleted))
	t.origin.add(m)
	return nil
}

func (d *decoder) decision(b *batch, m *kafka.Message) error {
	e, err := decodeDecision(m.Value)
	if err != nil {
		return err
	}
	if err := checkVersion(e.V, 1); err != nil {
		return err
	}
	before, err := d.redactOptional(b, e.Before, nil)
	if err != nil {
		return err
	}
	after, err := d.redactOptional(b, e.After, nil)
	if err != nil {
		return err
	}
	id := e.DecisionID
	if id == "" {
		id = "h:" + hashOf(m.Value)
	}
	t := &b.decisions
	t.base.add(orTime(e.At, m.Time))
	t.customerID = append(t.customerID, e.CustomerID)
	t.decisionID = append(t.decisionID, id)
	t.kind = append(t.kind, e.Kind)
	t.rule = append(t.rule, e.Rule)
	t.before = append(t.before, before)
	t.after = append(t.after, after)
	t.causing = append(t.causing, nonNil(e.CausingIDs))
	t.flagged = append(t.flagged, boolByte(e.Flagged))
	t.providerMS = append(t.providerMS, msOf(e.ProviderTime))
	t.origin.add(m)
	return nil
}

func (d *decoder) mismatch(b *batch, m *kafka.Message) error {
	e, err := decodeMismatch(m.Value)
	if err != nil {
		return err
	}
	if err := checkVersion(e.V, 1); err != nil {
		return err
	}
	id := firstOf(e.MismatchID, e.CustomerID+"|"+e.Kind+"|"+e.System)
	at := orTime(e.At, m.Time)
	t := &b.mismatches
	t.base.add(at)
	t.customerID = append(t.customerID, e.CustomerID)
	t.mismatchID = append(t.mismatchID, id)
	t.recordID = append(t.recordID, id+":"+e.State+"@"+strconv.FormatInt(at.UnixNano(), 10))
	t.kind = append(t.kind, e.Kind)
	t.system = append(t.system, e.System)
	t.state = append(t.state, e.State)
	t.detail = append(t.detail, e.Detail)
	t.origin.add(m)
	return nil
}

func (d *decoder) sink(b *batch, m *kafka.Message) error {
	e, err := decodeSinkResult(m.Value)
	if err != nil {
		return err
	}
	if err := checkVersion(e.V, 1); err != nil {
		return err
	}
	at := orTime(e.At, m.Time)
	id := firstOf(e.ActionID, "h:"+hashOf(m.Value))
	t := &b.sinks
	t.base.add(at)
	t.customerID = append(t.customerID, e.CustomerID)
	t.actionID = append(t.actionID, id)
	t.recordID = append(t.recordID, id+":"+e.Status+":"+strconv.Itoa(e.Attempts)+"@"+strconv.FormatInt(at.UnixNano(), 10))
	t.email = append(t.email, normEmail(e.Email))
	t.provider = append(t.provider, e.Provider)
	t.action = append(t.action, e.Action)
	t.target = append(t.target, e.Target)
	t.status = append(t.status, e.Status)
	t.httpStatus = append(t.httpStatus, int32(e.HTTPStatus))
	t.errText = append(t.errText, e.Error)
	t.attempts = append(t.attempts, int32(e.Attempts))
	t.durationMS = append(t.durationMS, e.DurationMS)
	t.entVersion = append(t.entVersion, e.EntitlementVersion)
	t.origin.add(m)
	return nil
}

// dlqFacts finds the customer a dead record names at its top level.
type dlqFacts struct{ customer, object string }

func (f *dlqFacts) wants(key string) bool { return key == "customer_id" || key == "object_id" }
func (f *dlqFacts) visit(path []string, key, v string) {
	if len(path) != 0 {
		return
	}
	if key == "customer_id" {
		f.customer = v
	} else {
		f.object = v
	}
}

func (d *decoder) deadLetter(b *batch, m *kafka.Message) error {
	var e schemas.DeadLetter
	if err := json.Unmarshal(m.Value, &e); err != nil {
		return err
	}
	if err := checkVersion(e.V, 1); err != nil {
		return err
	}
	var f dlqFacts
	record, err := d.redactOptional(b, e.Record, &f)
	if err != nil {
		return err
	}
	customerKey := firstOf(f.customer, f.object)
	t := &b.dlq
	t.base.add(orTime(e.At, m.Time))
	t.customerKey = append(t.customerKey, customerKey)
	t.recordID = append(t.recordID, "dlq:"+hashOf(m.Value))
	t.stage = append(t.stage, e.Stage)
	t.sourceTopic = append(t.sourceTopic, e.Topic)
	t.recordKey = append(t.recordKey, e.Key)
	t.reason = append(t.reason, e.Reason)
	t.record = append(t.record, record)
	t.origin.add(m)
	return nil
}

// rejection stores a count of refused webhook deliveries. It holds no
// payload; its request ids are ingest's own.
func (d *decoder) rejection(b *batch, m *kafka.Message) error {
	var r schemas.Rejection
	if err := json.Unmarshal(m.Value, &r); err != nil {
		return err
	}
	if err := checkVersion(r.V, schemas.RejectionVersion); err != nil {
		return err
	}
	if r.Provider == "" || r.RecordID == "" || r.Count < 1 {
		return fmt.Errorf("rejection record without provider, record_id or a positive count")
	}
	t := &b.rejections
	t.base.add(orTime(r.LastAt, m.Time))
	t.firstMS = append(t.firstMS, msOf(orTime(r.FirstAt, r.LastAt)))
	t.recordID = append(t.recordID, r.RecordID)
	t.provider = append(t.provider, r.Provider)
	t.reason = append(t.reason, r.Reason)
	t.httpStatus = append(t.httpStatus, int32(r.HTTPStatus))
	t.count = append(t.count, r.Count)
	ids := r.RequestIDs
	if len(ids) > schemas.MaxRejectionRequestIDs {
		ids = ids[:schemas.MaxRejectionRequestIDs]
	}
	t.requestIDs = append(t.requestIDs, nonNil(ids))
	t.instance = append(t.instance, r.Instance)
	t.origin.add(m)
	return nil
}

// ownedString turns a buffer the redaction scan allocated (and nothing else
// holds or changes) into a string without copying it.
func ownedString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// normEmail is the canonical form of an email: trimmed, lower-case.
func normEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

func orTime(t, fallback time.Time) time.Time {
	if t.IsZero() {
		return fallback
	}
	return t
}

func msOfPtr(t *time.Time) int64 {
	if t == nil {
		return 0
	}
	return msOf(*t)
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func boolByte(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// nonNil keeps Array columns from receiving nil slices.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func hashOf(b []byte) string {
	h := fnv.New128a()
	_, _ = h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}
