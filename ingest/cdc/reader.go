package cdc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/launchready/launchready/schemas"
)

// read receives the stream until stopped (nil) or an error. It runs on the
// session's goroutine and is the only reader of the connection.
func (s *session) read() error {
	for {
		// No context: a context per receive costs a goroutine; stopReading
		// interrupts a blocked receive with a read deadline instead.
		msg, err := s.conn.ReceiveMessage(context.Background())
		if err != nil {
			if s.stopped.Load() {
				return nil
			}
			return fmt.Errorf("replication stream: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			if err := s.handleCopyData(m.Data); err != nil {
				if s.stopped.Load() {
					return nil
				}
				return err
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(m))
		case *pgproto3.CopyDone:
			return errors.New("replication stream: the server ended it")
		}
	}
}

func (s *session) handleCopyData(data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case 'w':
		x, err := parseXLogData(data)
		if err != nil {
			return err
		}
		s.noteReceived(x.Start)
		s.lastMessage.Store(time.Now().UnixNano())
		return s.handleWAL(x)
	case 'k':
		k, err := parseKeepalive(data)
		if err != nil {
			return err
		}
		s.noteReceived(k.End)
		if k.Reply {
			select {
			case s.reply <- struct{}{}:
			default:
			}
		}
		// Between transactions, the server's position covers everything sent
		// so far: confirmable once all of it is acknowledged.
		if !s.inTxn {
			return s.position(k.End)
		}
	}
	return nil
}

func (s *session) handleWAL(x xlogData) error {
	d := x.Data
	if len(d) == 0 {
		return nil
	}
	switch d[0] {
	case msgBegin:
		b, err := decodeBegin(d)
		if err != nil {
			return err
		}
		if err := s.before(b.FinalLSN); err != nil {
			return err
		}
		s.inTxn = true
		s.tail = sourceTail(b.FinalLSN, b.XID, b.CommitTime, false, s.c.cfg.CDCSlot)
	case msgCommit:
		c, err := decodeCommit(d)
		if err != nil {
			return err
		}
		s.inTxn = false
		s.checkpoint(c.EndLSN)
		return s.flush()
	case msgRelation:
		m, err := decodeRelation(d)
		if err != nil {
			return err
		}
		return s.onRelation(m)
	case msgType:
		m, err := decodeType(d)
		if err != nil {
			return err
		}
		s.c.setTypeName(m.OID, m.Name)
	case msgInsert, msgUpdate, msgDelete:
		return s.onChange(x.Start, d)
	case msgTruncate:
		m, err := decodeTruncate(d)
		if err != nil {
			return err
		}
		s.c.metrics.truncates.Inc()
		var names []string
		for _, id := range m.RelIDs {
			if r := s.rels[id]; r != nil {
				names = append(names, r.name())
			}
		}
		s.log.Warn("TRUNCATE is not streamed (it has no per-key form): consumers keep the truncated rows; snapshot the table again if needed", "tables", names, "lsn", x.Start.String())
	case msgMessage:
		m, err := decodeLogical(d)
		if err != nil {
			return err
		}
		if !m.Transactional && !s.inTxn {
			return s.position(m.LSN)
		}
	case msgOrigin:
	default:
		return fmt.Errorf("replication stream: unknown pgoutput message %q", d[0])
	}
	return nil
}

// position handles a point between transactions that the stream reached:
// a snapshot may be due, and the point is confirmable once acknowledged.
func (s *session) position(pos LSN) error {
	if err := s.before(pos); err != nil {
		return err
	}
	s.checkpoint(pos)
	return s.flush()
}

// before runs at each point between transactions, just before the stream
// moves to pos. A prepared snapshot whose consistent point is reached is
// emitted here: its rows then sit in the stream exactly where the snapshot
// was taken (after every change it contains, before every change it lacks).
// A requested snapshot is prepared here too, while the reader is paused, so
// that its point cannot lie behind what was already read.
func (s *session) before(pos LSN) error {
	if s.job != nil && pos >= s.job.point {
		job := s.job
		s.job = nil
		if err := s.inject(job); err != nil {
			return err
		}
	}
	if s.job != nil {
		return nil
	}
	select {
	case <-s.c.snapReq:
		s.wantSnapshot = true
	default:
	}
	if !s.wantSnapshot {
		return nil
	}
	s.wantSnapshot = false
	job, err := s.prepareJob()
	if err != nil || job == nil {
		return err
	}
	if pos >= job.point {
		return s.inject(job)
	}
	s.job = job
	// A message past the point, so the stream reaches it even when idle.
	return s.c.heartbeat(s.ctx)
}

func (s *session) onRelation(m relationMsg) error {
	keys := map[string]bool{}
	for _, col := range m.Columns {
		if col.Key {
			keys[col.Name] = true
		}
	}
	// With replica identity full (or nothing) every column (or none) is
	// flagged: the key is then the primary key.
	if m.ReplicaIdentity == 'f' || m.ReplicaIdentity == 'n' {
		pk, err := primaryKey(s.ctx, s.c.app, m.ID, 'd')
		if err != nil {
			return fmt.Errorf("primary key of %s.%s: %w", m.Namespace, m.Name, err)
		}
		keys = map[string]bool{}
		for _, k := range pk {
			keys[k] = true
		}
	}
	defs := make([]relColumnDef, len(m.Columns))
	for i, col := range m.Columns {
		defs[i] = relColumnDef{Name: col.Name, TypeOID: col.TypeOID, TypeName: s.c.typeName(s.ctx, col.TypeOID), Key: keys[col.Name]}
	}
	name := m.Namespace + "." + m.Name
	if err := s.c.ensureTopics(s.ctx, name); err != nil {
		return err
	}
	topic := s.c.cfg.Topic(schemas.CDCTopic(m.Namespace, m.Name))
	rel := newRelation(m.ID, m.Namespace, m.Name, topic, defs, s.c.metrics.rows(name))
	if old := s.rels[m.ID]; old != nil && !old.sameShape(rel) {
		s.log.Info("table changed shape", "table", name, "columns", len(rel.cols))
	}
	s.rels[m.ID] = rel
	return nil
}

func (s *session) onChange(lsn LSN, d []byte) error {
	m, err := s.dec.decode(d)
	if err != nil {
		return err
	}
	rel := s.rels[m.RelID]
	if rel == nil {
		return fmt.Errorf("replication stream: change of relation %d before its description", m.RelID)
	}
	keyOnly := m.OldKind == 'K'
	switch m.Op {
	case msgInsert:
		err = s.emit(rel, schemas.OpCreate, lsn, m.New, nil, false, m.New)
	case msgUpdate:
		if m.Old != nil && keyChanged(rel, m.Old, m.New) {
			// The row moved to another key: the old key ends, the new one
			// begins, each in its own key's order.
			if err = s.emit(rel, schemas.OpDelete, lsn, m.Old, m.Old, keyOnly, nil); err == nil {
				err = s.emit(rel, schemas.OpCreate, lsn, m.New, nil, false, m.New)
			}
			break
		}
		keyFrom := m.New
		if m.Old != nil && keyUnchangedToast(rel, m.New) {
			keyFrom = m.Old
		}
		err = s.emit(rel, schemas.OpUpdate, lsn, keyFrom, m.Old, keyOnly, m.New)
	case msgDelete:
		err = s.emit(rel, schemas.OpDelete, lsn, m.Old, m.Old, keyOnly, nil)
	}
	if err != nil {
		return err
	}
	if len(s.chunk) >= chunkItems {
		return s.flush()
	}
	return nil
}

func (s *session) emit(rel *relation, op string, lsn LSN, keyFrom, before []tupleCol, keyOnly bool, after []tupleCol) error {
	rec, err := s.enc.encode(rel, op, lsn, s.tail, keyFrom, before, keyOnly, after)
	if err != nil {
		return err
	}
	s.chunk = append(s.chunk, item{rec: rec})
	return nil
}

// keyChanged reports whether an update moved the row to another key.
func keyChanged(rel *relation, old, new []tupleCol) bool {
	if len(old) != len(rel.cols) || len(new) != len(rel.cols) {
		return false
	}
	for _, i := range rel.keyIdx {
		o, n := old[i], new[i]
		if n.Kind == colUnchanged || o.Kind == colUnchanged {
			continue
		}
		if o.Kind != n.Kind || !bytes.Equal(o.Data, n.Data) {
			return true
		}
	}
	return false
}

func keyUnchangedToast(rel *relation, new []tupleCol) bool {
	for _, i := range rel.keyIdx {
		if i < len(new) && new[i].Kind == colUnchanged {
			return true
		}
	}
	return false
}
