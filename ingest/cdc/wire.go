package cdc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
)

// The streaming replication sub-protocol (commands and CopyData framing
// through pglogrepl) on a connection opened with replication=database. The
// pgoutput payloads are decoded in pgoutput.go.

// sessionParams are set on every connection whose output must look the same:
// the replication connection (pgoutput renders values with the walsender's
// settings) and the snapshot connections (rows read as text). Equal settings
// make a snapshot row and a streamed row of the same data byte-identical.
var sessionParams = map[string]string{
	"DateStyle":          "ISO, MDY",
	"TimeZone":           "UTC",
	"IntervalStyle":      "postgres",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
	"client_encoding":    "UTF8",
}

// pgConfig parses url and applies the session parameters and extra.
func pgConfig(url string, replication bool, extra map[string]string) (*pgconn.Config, error) {
	pc, err := pgconn.ParseConfig(url)
	if err != nil {
		return nil, errors.New("app database: the URL does not parse as a postgres URL")
	}
	for k, v := range sessionParams {
		pc.RuntimeParams[k] = v
	}
	if replication {
		pc.RuntimeParams["replication"] = "database"
		pc.RuntimeParams["application_name"] = "launchready-cdc"
	}
	for k, v := range extra {
		pc.RuntimeParams[k] = v
	}
	return pc, nil
}

// connectReplication opens a replication connection to the database of url.
func connectReplication(ctx context.Context, url string, extra map[string]string) (*pgconn.PgConn, error) {
	pc, err := pgConfig(url, true, extra)
	if err != nil {
		return nil, err
	}
	conn, err := pgconn.ConnectConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("replication connection to %s:%d: %w", pc.Host, pc.Port, err)
	}
	return conn, nil
}

// createdSlot is the answer to CREATE_REPLICATION_SLOT.
type createdSlot struct {
	Name string
	// ConsistentPoint is where streaming starts: every transaction that
	// committed before it is in the exported snapshot, every one after is
	// streamed.
	ConsistentPoint LSN
	// SnapshotName can be imported with SET TRANSACTION SNAPSHOT for as long
	// as the creating connection runs no other command.
	SnapshotName string
}

// createSlot creates a logical slot with the pgoutput plugin and exports its
// snapshot. A temporary slot disappears with the connection. The name must
// be a valid slot name (a-z, 0-9, _), which needs no quoting.
func createSlot(ctx context.Context, conn *pgconn.PgConn, name string, temporary bool) (createdSlot, error) {
	// EXPORT_SNAPSHOT, the pre-15 spelling, is accepted by every supported release.
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, name, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Temporary: temporary, SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication,
	})
	if err != nil {
		return createdSlot{}, err
	}
	lsn, err := ParseLSN(res.ConsistentPoint)
	if err != nil {
		return createdSlot{}, fmt.Errorf("CREATE_REPLICATION_SLOT: %w", err)
	}
	return createdSlot{Name: res.SlotName, ConsistentPoint: lsn, SnapshotName: res.SnapshotName}, nil
}

// startReplication switches conn to streaming the slot's changes from start
// through pgoutput protocol 1, with logical messages (heartbeats) included.
// It returns once the server answered CopyBothResponse.
func startReplication(ctx context.Context, conn *pgconn.PgConn, slot, publication string, start LSN) error {
	return pglogrepl.StartReplication(ctx, conn, slot, pglogrepl.LSN(start), pglogrepl.StartReplicationOptions{
		Mode: pglogrepl.LogicalReplication,
		PluginArgs: []string{
			"proto_version '1'",
			"publication_names " + quoteLiteral(quoteIdent(publication)),
			"messages 'true'",
		},
	})
}

// pgEpoch is the origin of the timestamps of the replication protocol.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

func pgTime(micros int64) time.Time {
	return pgEpoch.Add(time.Duration(micros) * time.Microsecond).UTC()
}

func pgMicros(t time.Time) int64 { return t.Sub(pgEpoch).Microseconds() }

// xlogData is one 'w' CopyData payload: WAL data starting at Start.
type xlogData struct {
	Start LSN
	Time  time.Time
	Data  []byte // aliases the receive buffer: valid until the next receive
}

// keepalive is one 'k' CopyData payload.
type keepalive struct {
	End   LSN
	Reply bool // the server asks for a status update now
}

func parseXLogData(b []byte) (xlogData, error) {
	if len(b) == 0 || b[0] != 'w' {
		return xlogData{}, errors.New("XLogData: wrong message")
	}
	x, err := pglogrepl.ParseXLogData(b[1:])
	if err != nil {
		return xlogData{}, err
	}
	return xlogData{Start: LSN(x.WALStart), Time: x.ServerTime, Data: x.WALData}, nil
}

func parseKeepalive(b []byte) (keepalive, error) {
	if len(b) == 0 || b[0] != 'k' {
		return keepalive{}, errors.New("keepalive: wrong message")
	}
	k, err := pglogrepl.ParsePrimaryKeepaliveMessage(b[1:])
	if err != nil {
		return keepalive{}, err
	}
	return keepalive{End: LSN(k.ServerWALEnd), Reply: k.ReplyRequested}, nil
}

// standbyStatus encodes a complete CopyData message carrying a standby status
// update. flush is what the server may consider durable on our side (the
// slot's confirmed_flush_lsn follows it); write is what we received.
// (pglogrepl.SendStandbyStatusUpdate writes through the connection's
// frontend, which the reader uses concurrently; the status loop writes this
// to the socket directly instead.)
func standbyStatus(write, flush LSN, now time.Time, reply bool) []byte {
	b := make([]byte, 0, 39)
	b = append(b, 'd', 0, 0, 0, 38, pglogrepl.StandbyStatusUpdateByteID)
	b = binary.BigEndian.AppendUint64(b, uint64(write))
	b = binary.BigEndian.AppendUint64(b, uint64(flush))
	b = binary.BigEndian.AppendUint64(b, uint64(flush)) // apply
	b = binary.BigEndian.AppendUint64(b, uint64(pgMicros(now)))
	if reply {
		return append(b, 1)
	}
	return append(b, 0)
}

// quoteIdent quotes a Postgres identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// quoteLiteral quotes a Postgres string literal.
func quoteLiteral(s string) string { return `'` + strings.ReplaceAll(s, `'`, `''`) + `'` }

// qualified quotes schema.table.
func qualified(schema, table string) string { return quoteIdent(schema) + "." + quoteIdent(table) }
