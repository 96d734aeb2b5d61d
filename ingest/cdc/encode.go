package cdc

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/launchready/launchready/schemas"
)

// The records are written straight from the wire tuples into JSON, without
// building a schemas.Change: this is the hot path of the stage. The output
// decodes into schemas.Change exactly as if it had been marshalled from one
// (encode_test.go holds the two together).

// record is one change ready for Kafka. key aliases value: the Kafka key is
// the JSON of the key columns, the same bytes as the record's "key" field.
type record struct {
	rel   *relation
	op    string
	value []byte
	key   []byte
}

// sourceTail renders the part of a "source" object that all records of a
// transaction share: everything after the record's own LSN, and the closing
// braces of the source and of the record.
func sourceTail(commitLSN LSN, xid uint32, commitTime time.Time, snapshot bool, slot string) []byte {
	b := make([]byte, 0, 128)
	b = append(b, `","commit_lsn":"`...)
	b = appendLSN(b, commitLSN)
	b = append(b, '"')
	if xid != 0 {
		b = append(b, `,"xid":`...)
		b = strconv.AppendUint(b, uint64(xid), 10)
	}
	b = append(b, `,"commit_time":"`...)
	b = commitTime.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if snapshot {
		b = append(b, `,"snapshot":true`...)
	}
	if slot != "" {
		b = append(b, `,"slot":`...)
		b = appendJSONString(b, slot)
	}
	return append(b, "}}"...)
}

var errBinaryTuple = errors.New("binary tuple data (not requested)")

// encoder reuses its buffer between records; it is not safe for concurrent use.
type encoder struct {
	buf []byte
}

// encode renders one record. keyFrom supplies the key values; before is
// omitted when nil, and limited to its non-null columns when keyOnly (an old
// key tuple carries nulls for the other columns); after is omitted when nil.
func (e *encoder) encode(rel *relation, op string, lsn LSN, tail []byte, keyFrom, before []tupleCol, keyOnly bool, after []tupleCol) (record, error) {
	if keyFrom == nil {
		return record{}, fmt.Errorf("%s: no tuple to take the key from", rel.name())
	}
	for _, t := range [][]tupleCol{keyFrom, before, after} {
		if t != nil && len(t) != len(rel.cols) {
			return record{}, fmt.Errorf("%s: tuple of %d columns, relation has %d", rel.name(), len(t), len(rel.cols))
		}
	}
	b := append(e.buf[:0], `{"v":`...)
	b = strconv.AppendInt(b, schemas.CDCVersion, 10)
	b = append(b, `,"op":"`...)
	b = append(b, op...)
	b = append(b, rel.head...)

	keyStart := len(b)
	b = append(b, '{')
	for i, idx := range rel.keyIdx {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, rel.cols[idx].jsonKey...)
		var err error
		if b, err = appendValue(b, rel.cols[idx].kind, keyFrom[idx]); err != nil {
			return record{}, err
		}
	}
	b = append(b, '}')
	keyEnd := len(b)

	var err error
	if before != nil {
		b = append(b, `,"before":`...)
		if b, err = appendRow(b, rel, before, keyOnly); err != nil {
			return record{}, err
		}
	}
	unchanged := false
	if after != nil {
		b = append(b, `,"after":`...)
		if b, err = appendRow(b, rel, after, false); err != nil {
			return record{}, err
		}
		for _, c := range after {
			if c.Kind == colUnchanged {
				unchanged = true
				break
			}
		}
	}
	b = append(b, rel.columnsJSON...)
	if unchanged {
		b = append(b, `,"unchanged":[`...)
		n := 0
		for i, c := range after {
			if c.Kind == colUnchanged {
				if n > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, rel.cols[i].name)
				n++
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"source":{"lsn":"`...)
	b = appendLSN(b, lsn)
	b = append(b, tail...)
	e.buf = b

	value := make([]byte, len(b))
	copy(value, b)
	return record{rel: rel, op: op, value: value, key: value[keyStart:keyEnd:keyEnd]}, nil
}

// appendRow writes a tuple as a JSON object. Unchanged TOAST values are left
// out (they are listed in "unchanged"), never written as null.
func appendRow(b []byte, rel *relation, t []tupleCol, skipNull bool) ([]byte, error) {
	b = append(b, '{')
	n := 0
	for i, c := range t {
		if c.Kind == colUnchanged || (skipNull && c.Kind == colNull) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = append(b, rel.cols[i].jsonKey...)
		var err error
		if b, err = appendValue(b, rel.cols[i].kind, c); err != nil {
			return nil, err
		}
		n++
	}
	return append(b, '}'), nil
}

// appendValue writes one column value as JSON.
func appendValue(b []byte, kind valueKind, c tupleCol) ([]byte, error) {
	switch c.Kind {
	case colNull, colUnchanged:
		// A key column can only be unchanged-TOAST when the key itself is
		// huge; there is no value to give, so it is null.
		return append(b, "null"...), nil
	case colBinary:
		return nil, errBinaryTuple
	}
	v := c.Data
	switch kind {
	case kindBool:
		if len(v) == 1 && v[0] == 't' {
			return append(b, "true"...), nil
		}
		if len(v) == 1 && v[0] == 'f' {
			return append(b, "false"...), nil
		}
	case kindInt:
		if isInteger(v) {
			return append(b, v...), nil
		}
	case kindFloat:
		// NaN and ±Infinity have no JSON number form: they stay strings.
		if isJSONNumber(v) {
			return append(b, v...), nil
		}
	case kindJSON:
		if json.Valid(v) {
			return append(b, v...), nil
		}
	case kindTimestamp:
		return appendTimestamp(b, v, false), nil
	case kindTimestampTZ:
		return appendTimestamp(b, v, true), nil
	}
	return appendJSONBytes(b, v), nil
}

func isInteger(v []byte) bool {
	if len(v) > 0 && v[0] == '-' {
		v = v[1:]
	}
	if len(v) == 0 || len(v) > 20 {
		return false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(v) == 1 || v[0] != '0'
}

// isJSONNumber checks the JSON number grammar (Postgres prints floats in it,
// e.g. 1.5, -2e-05, 1e+100, except NaN and Infinity).
func isJSONNumber(v []byte) bool {
	i := 0
	if i < len(v) && v[i] == '-' {
		i++
	}
	digits := func() int {
		s := i
		for i < len(v) && v[i] >= '0' && v[i] <= '9' {
			i++
		}
		return i - s
	}
	start := i
	if n := digits(); n == 0 || (n > 1 && v[start] == '0') {
		return false
	}
	if i < len(v) && v[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(v) && (v[i] == 'e' || v[i] == 'E') {
		i++
		if i < len(v) && (v[i] == '+' || v[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(v)
}

// appendTimestamp turns Postgres' ISO output in UTC ("2024-05-01
// 10:00:00.5+00") into RFC 3339 ("2024-05-01T10:00:00.5Z"); a timestamp
// without time zone gets no zone. Anything else (infinity, BC dates, years
// past 9999) is kept as Postgres wrote it.
func appendTimestamp(b, v []byte, tz bool) []byte {
	n := len(v)
	ok := n >= 19
	for i := 0; ok && i < 19; i++ {
		switch i {
		case 4, 7:
			ok = v[i] == '-'
		case 10:
			ok = v[i] == ' '
		case 13, 16:
			ok = v[i] == ':'
		default:
			ok = v[i] >= '0' && v[i] <= '9'
		}
	}
	if ok && tz {
		ok = n >= 22 && string(v[n-3:]) == "+00"
		n -= 3
	}
	if ok && n > 19 {
		ok = v[19] == '.' && n > 20
		for _, c := range v[20:max(n, 20)] {
			ok = ok && c >= '0' && c <= '9'
		}
	}
	if !ok {
		return appendJSONBytes(b, v)
	}
	b = append(b, '"')
	b = append(b, v[:10]...)
	b = append(b, 'T')
	b = append(b, v[11:n]...)
	if tz {
		b = append(b, 'Z')
	}
	return append(b, '"')
}

// appendJSONString writes s as a JSON string.
func appendJSONString(b []byte, s string) []byte { return appendJSONBytes(b, []byte(s)) }

// appendJSONBytes writes v as a JSON string: quotes, backslashes and control
// characters escaped, invalid UTF-8 replaced by U+FFFD (as encoding/json does).
func appendJSONBytes(b, v []byte) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(v); {
		c := v[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, v[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(v[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, v[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, v[start:]...)
	return append(b, '"')
}
