package reconcile

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/launchready/launchready/schemas"
)

// circleMember is a Circle community member object (Admin API v2), or the
// workflow push envelope (community_member_id, event, member_tag_id), or
// either wrapped as {"member": …}.
type circleMember struct {
	ID         flexID        `json:"id"`
	UserID     flexID        `json:"user_id"`
	SSOUserID  flexID        `json:"sso_provider_user_id"`
	Email      string        `json:"email"`
	Active     *bool         `json:"active"`
	UpdatedAt  string        `json:"updated_at"`
	MemberTags *[]circleRef  `json:"member_tags"`
	Member     *circleMember `json:"member"`

	// workflow push
	Event         string `json:"event"`
	OccurredAt    string `json:"occurred_at"`
	MemberID      flexID `json:"community_member_id"`
	MemberTagID   flexID `json:"member_tag_id"`
	AccessGroupID flexID `json:"access_group_id"`
}

type circleRef struct {
	ID   flexID `json:"id"`
	Name string `json:"name"`
}

// DecodeCircle turns a Circle member observation (poll or push) into a Fact
// (nil when it names nobody). Like Kit, Circle never touches billing.
func DecodeCircle(raw *schemas.RawEvent) (*Fact, error) {
	var m circleMember
	if err := json.Unmarshal(raw.Body, &m); err != nil {
		return nil, fmt.Errorf("circle event %s: %w", raw.EventID, err)
	}
	return factFromCircle(raw, &m), nil
}

func factFromCircle(raw *schemas.RawEvent, body *circleMember) *Fact {
	m := *body
	if m.Member != nil {
		inner := *m.Member
		if inner.Event == "" {
			inner.Event = m.Event
		}
		if inner.OccurredAt == "" {
			inner.OccurredAt = m.OccurredAt
		}
		m = inner
	}
	f := &Fact{Key: raw.DedupKey(), Source: SourceCircle, Type: raw.Type, EventID: raw.EventID, At: raw.ProviderTime, Received: raw.ReceivedAt}
	if f.Type == "" {
		f.Type = m.Event
	}
	if f.At.IsZero() {
		f.At = parseTime(m.UpdatedAt)
	}
	if f.At.IsZero() {
		f.At = parseTime(m.OccurredAt)
	}
	memberID := string(m.ID)
	if m.MemberID != "" {
		memberID = string(m.MemberID)
	}
	cid := MakeID(KindCircle, memberID)
	f.addLink(cid)
	f.addLink(MakeID(KindCircleUser, string(m.UserID)))
	// Circle's SSO field carries the app's own user id when SSO is used.
	f.addLink(MakeID(KindUser, string(m.SSOUserID)))
	if e := f.addEmail(m.Email); e != "" {
		of := cid
		if of == "" {
			of = MakeID(KindEmail, e)
		}
		f.Email = &EmailClaim{Of: of, Email: e, Rank: RankCircle}
	}
	if memberID != "" {
		o := &Observe{System: SourceCircle, Record: memberID}
		if m.Active != nil && !*m.Active {
			o.State = "inactive"
		} else if m.Active != nil {
			o.State = "active"
		}
		if m.MemberTags != nil {
			o.Snapshot = true
			for _, t := range *m.MemberTags {
				if id, err := strconv.ParseInt(string(t.ID), 10, 64); err == nil {
					o.Tags = append(o.Tags, id)
				}
			}
			sort.Slice(o.Tags, func(i, j int) bool { return o.Tags[i] < o.Tags[j] })
		}
		if h, ok := circlePushHolding(m); ok {
			o.Holds = []Holding{h}
		}
		f.Observe = o
	}
	if len(f.Links) == 0 {
		return nil
	}
	return f
}

// circlePushHolding reads a workflow push about one tag or access group.
func circlePushHolding(m circleMember) (Holding, bool) {
	ev := strings.ToLower(m.Event)
	present := strings.Contains(ev, "added")
	if !present && !strings.Contains(ev, "removed") {
		return Holding{}, false
	}
	kind, raw := HoldTag, string(m.MemberTagID)
	if strings.Contains(ev, "access_group") {
		kind, raw = HoldGroup, string(m.AccessGroupID)
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return Holding{}, false
	}
	return Holding{Kind: kind, ID: id, Present: present}, true
}
