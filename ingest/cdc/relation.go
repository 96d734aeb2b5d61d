package cdc

import (
	"hash/fnv"
	"sort"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/internal/kafka"
	"github.com/launchready/launchready/schemas"
)

// valueKind decides how a column's text value becomes JSON.
type valueKind uint8

const (
	kindString valueKind = iota
	kindBool
	kindInt
	kindFloat
	kindJSON
	kindTimestamp
	kindTimestampTZ
)

// Built-in type OIDs (pg_type.dat); they never change.
func kindOf(oid uint32) valueKind {
	switch oid {
	case 16:
		return kindBool
	case 20, 21, 23, 26:
		return kindInt
	case 700, 701:
		return kindFloat
	case 114, 3802:
		return kindJSON
	case 1114:
		return kindTimestamp
	case 1184:
		return kindTimestampTZ
	default:
		// numeric stays a string (its precision exceeds a JSON number's in
		// most decoders), as do text, uuid, dates, arrays, enums, …
		return kindString
	}
}

// column is one published column of a relation.
type column struct {
	name    string
	typeOID uint32
	kind    valueKind
	key     bool
	jsonKey []byte // `"name":`
}

// relation is a table as the stream currently describes it, with everything
// its records share computed once.
type relation struct {
	id            uint32
	schema, table string
	topic         string
	cols          []column
	keyIdx        []int // indices of key columns, sorted by column name
	head          []byte
	columnsJSON   []byte
	headers       []kafka.Header
	topicHash     uint32
	rows          map[string]prometheus.Counter // by op
}

// relColumnDef describes a column for newRelation.
type relColumnDef struct {
	Name     string
	TypeOID  uint32
	TypeName string
	Key      bool
}

// newRelation builds a relation. topic is the full topic name.
func newRelation(id uint32, schema, table, topic string, defs []relColumnDef, rows func(op string) prometheus.Counter) *relation {
	r := &relation{id: id, schema: schema, table: table, topic: topic}
	for _, d := range defs {
		c := column{name: d.Name, typeOID: d.TypeOID, kind: kindOf(d.TypeOID), key: d.Key}
		c.jsonKey = append(appendJSONString(nil, d.Name), ':')
		r.cols = append(r.cols, c)
		if d.Key {
			r.keyIdx = append(r.keyIdx, len(r.cols)-1)
		}
	}
	sort.SliceStable(r.keyIdx, func(i, j int) bool { return r.cols[r.keyIdx[i]].name < r.cols[r.keyIdx[j]].name })

	r.head = append(r.head, `","schema":`...)
	r.head = appendJSONString(r.head, schema)
	r.head = append(r.head, `,"table":`...)
	r.head = appendJSONString(r.head, table)
	r.head = append(r.head, `,"key":`...)

	r.columnsJSON = append(r.columnsJSON, `,"columns":[`...)
	for i, d := range defs {
		if i > 0 {
			r.columnsJSON = append(r.columnsJSON, ',')
		}
		r.columnsJSON = append(r.columnsJSON, `{"name":`...)
		r.columnsJSON = appendJSONString(r.columnsJSON, d.Name)
		r.columnsJSON = append(r.columnsJSON, `,"type":`...)
		r.columnsJSON = appendJSONString(r.columnsJSON, d.TypeName)
		if d.Key {
			r.columnsJSON = append(r.columnsJSON, `,"key":true`...)
		}
		r.columnsJSON = append(r.columnsJSON, '}')
	}
	r.columnsJSON = append(r.columnsJSON, ']')

	r.headers = []kafka.Header{{Key: schemas.HeaderEnvelope, Value: []byte("cdc/" + strconv.Itoa(schemas.CDCVersion))}}
	h := fnv.New32a()
	h.Write([]byte(topic))
	r.topicHash = h.Sum32()
	r.rows = map[string]prometheus.Counter{}
	if rows != nil {
		for _, op := range []string{schemas.OpCreate, schemas.OpUpdate, schemas.OpDelete, schemas.OpRead} {
			r.rows[op] = rows(op)
		}
	}
	return r
}

// name is schema.table.
func (r *relation) name() string { return r.schema + "." + r.table }

// sameShape reports whether o has the same columns as r, so records built
// with either look alike.
func (r *relation) sameShape(o *relation) bool {
	if len(r.cols) != len(o.cols) || r.topic != o.topic {
		return false
	}
	for i := range r.cols {
		a, b := r.cols[i], o.cols[i]
		if a.name != b.name || a.typeOID != b.typeOID || a.key != b.key {
			return false
		}
	}
	return string(r.columnsJSON) == string(o.columnsJSON)
}
