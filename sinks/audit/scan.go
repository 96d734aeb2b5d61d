package audit

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/launchready/launchready/internal/redact"
)

// scanner is a validating JSON tokenizer that copies a document to out
// while it reads it, leaving out the fields its Redactor drops, and reads
// the envelopes' fields for the one-pass decoders (decode.go).
type scanner struct {
	in   []byte
	pos  int
	out  []byte
	path []string
	r    *Redactor
	v    visitor
	// want is set while the value being read belongs to a field v wants.
	want bool
	// verdicts memoises drop verdicts for one goroutine (nil: shared cache).
	verdicts map[string]bool
}

func (s *scanner) fail(what string) error {
	return fmt.Errorf("%w: %s at byte %d", ErrNotJSON, what, s.pos)
}

func (s *scanner) ws() {
	for s.pos < len(s.in) {
		switch s.in[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// value reads one JSON value; it is copied to out when write is set.
func (s *scanner) value(write bool, depth int) error {
	if s.pos >= len(s.in) {
		return s.fail("unexpected end")
	}
	switch c := s.in[s.pos]; {
	case c == '{':
		s.want = false
		return s.object(write, depth+1)
	case c == '[':
		return s.array(write, depth+1)
	case c == '"':
		start := s.pos
		esc, err := s.str()
		if err != nil {
			return err
		}
		if write {
			s.stringValue(s.in[start:s.pos], esc)
		}
		return nil
	case c == 't':
		return s.literal("true", write)
	case c == 'f':
		return s.literal("false", write)
	case c == 'n':
		return s.literal("null", write)
	case c == '-' || (c >= '0' && c <= '9'):
		start := s.pos
		if err := s.number(); err != nil {
			return err
		}
		if write {
			lit := s.in[start:s.pos]
			// A number long enough to be a card number is scrubbed like a
			// string: it may be one typed into a numeric field.
			if len(lit) >= 15 && suspicious(lit) && redact.String(string(lit)) != string(lit) {
				lit = []byte(`"` + redact.Mask + `"`)
			}
			s.out = append(s.out, lit...)
			if s.want {
				s.v.visit(s.path[:len(s.path)-1], s.path[len(s.path)-1], string(s.in[start:s.pos]))
			}
		}
		return nil
	default:
		return s.fail("unexpected character")
	}
}

func (s *scanner) object(write bool, depth int) error {
	if depth > maxDepth {
		return s.fail("nested too deeply")
	}
	s.pos++ // {
	if write {
		s.out = append(s.out, '{')
	}
	kept := 0
	s.ws()
	if s.pos < len(s.in) && s.in[s.pos] == '}' {
		s.pos++
		if write {
			s.out = append(s.out, '}')
		}
		return nil
	}
	for {
		s.ws()
		if s.pos >= len(s.in) || s.in[s.pos] != '"' {
			return s.fail("expected a field name")
		}
		start := s.pos
		esc, err := s.str()
		if err != nil {
			return err
		}
		rawKey := s.in[start:s.pos]
		key := ""
		if write {
			key = keyString(rawKey, esc)
		}
		s.ws()
		if s.pos >= len(s.in) || s.in[s.pos] != ':' {
			return s.fail("expected ':'")
		}
		s.pos++
		s.ws()
		keep := write && !s.drops(key)
		if keep {
			if kept > 0 {
				s.out = append(s.out, ',')
			}
			kept++
			if suspicious(rawKey) {
				if clean := redact.String(key); clean != key {
					rawKey, _ = json.Marshal(clean)
				}
			}
			s.out = append(s.out, rawKey...)
			s.out = append(s.out, ':')
		}
		if !write {
			if err := s.value(false, depth); err != nil {
				return err
			}
		} else {
			s.want = keep && s.v != nil && s.v.wants(key)
			s.path = append(s.path, key)
			err = s.value(keep, depth)
			s.path = s.path[:len(s.path)-1]
			s.want = false
			if err != nil {
				return err
			}
		}
		s.ws()
		if s.pos >= len(s.in) {
			return s.fail("unterminated object")
		}
		switch s.in[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			if write {
				s.out = append(s.out, '}')
			}
			return nil
		default:
			return s.fail("expected ',' or '}'")
		}
	}
}

func (s *scanner) array(write bool, depth int) error {
	if depth > maxDepth {
		return s.fail("nested too deeply")
	}
	s.pos++ // [
	if write {
		s.out = append(s.out, '[')
	}
	s.ws()
	if s.pos < len(s.in) && s.in[s.pos] == ']' {
		s.pos++
		if write {
			s.out = append(s.out, ']')
		}
		return nil
	}
	for i := 0; ; i++ {
		s.ws()
		if write && i > 0 {
			s.out = append(s.out, ',')
		}
		if err := s.value(write, depth); err != nil {
			return err
		}
		s.ws()
		if s.pos >= len(s.in) {
			return s.fail("unterminated array")
		}
		switch s.in[s.pos] {
		case ',':
			s.pos++
		case ']':
			s.pos++
			if write {
				s.out = append(s.out, ']')
			}
			return nil
		default:
			return s.fail("expected ',' or ']'")
		}
	}
}

// str advances over a string literal, validating it; esc reports whether it
// holds escapes.
func (s *scanner) str() (esc bool, err error) {
	s.pos++ // opening quote
	// Most strings hold neither escapes nor control characters: find the
	// closing quote and check the run between eight bytes at a time.
	if q := bytes.IndexByte(s.in[s.pos:], '"'); q >= 0 && plainRun(s.in[s.pos:s.pos+q]) {
		s.pos += q + 1
		return false, nil
	}
	for s.pos < len(s.in) {
		// Plain characters first, one table lookup each.
		for s.pos < len(s.in) && plain[s.in[s.pos]] {
			s.pos++
		}
		if s.pos >= len(s.in) {
			break
		}
		c := s.in[s.pos]
		switch {
		case c == '"':
			s.pos++
			return esc, nil
		case c == '\\':
			esc = true
			if s.pos+1 >= len(s.in) {
				return esc, s.fail("unterminated escape")
			}
			switch s.in[s.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.pos += 2
			case 'u':
				if s.pos+6 > len(s.in) {
					return esc, s.fail("short \\u escape")
				}
				for _, h := range s.in[s.pos+2 : s.pos+6] {
					if !isHex(h) {
						return esc, s.fail("bad \\u escape")
					}
				}
				s.pos += 6
			default:
				return esc, s.fail("bad escape")
			}
		case c < 0x20:
			return esc, s.fail("control character in string")
		default:
			s.pos++
		}
	}
	return esc, s.fail("unterminated string")
}

// plainRun reports whether b holds no backslash and no control character.
func plainRun(b []byte) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	for len(b) >= 8 {
		x := binary.LittleEndian.Uint64(b)
		// A byte below 0x20 or equal to '\\' sets its high bit here.
		lt := (x - ones*0x20) & ^x & highs
		bs := x ^ (ones * '\\')
		eq := (bs - ones) & ^bs & highs
		if lt|eq != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if !plain[c] {
			return false
		}
	}
	return true
}

// plain marks the bytes a string literal holds as they are: not the quote,
// the backslash or a control character.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func (s *scanner) literal(lit string, write bool) error {
	if !bytes.HasPrefix(s.in[s.pos:], []byte(lit)) {
		return s.fail("bad literal")
	}
	s.pos += len(lit)
	if write {
		s.out = append(s.out, lit...)
	}
	return nil
}

// number advances over -?(0|[1-9]d*)(.d+)?([eE][+-]?d+)?.
func (s *scanner) number() error {
	digits := func() int {
		n := 0
		for s.pos < len(s.in) && s.in[s.pos] >= '0' && s.in[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	if s.in[s.pos] == '-' {
		s.pos++
	}
	if s.pos < len(s.in) && s.in[s.pos] == '0' {
		s.pos++
	} else if digits() == 0 {
		return s.fail("bad number")
	}
	if s.pos < len(s.in) && s.in[s.pos] == '.' {
		s.pos++
		if digits() == 0 {
			return s.fail("bad fraction")
		}
	}
	if s.pos < len(s.in) && (s.in[s.pos] == 'e' || s.in[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.in) && (s.in[s.pos] == '+' || s.in[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			return s.fail("bad exponent")
		}
	}
	return nil
}

// stringValue writes a kept string, scrubbed when it may hold a credential or
// a card number, and hands it to the visitor when wanted.
func (s *scanner) stringValue(raw []byte, esc bool) {
	if !esc && !s.want && !suspicious(raw) {
		s.out = append(s.out, raw...)
		return
	}
	v := decodeString(raw, esc)
	clean := v
	if suspicious([]byte(v)) {
		clean = redact.String(v)
	}
	if s.want {
		s.v.visit(s.path[:len(s.path)-1], s.path[len(s.path)-1], clean)
	}
	if clean == v {
		s.out = append(s.out, raw...)
		return
	}
	b, _ := json.Marshal(clean)
	s.out = append(s.out, b...)
}

// drops is the Redactor's verdict on key under the current path, with the
// single-field verdicts memoised in the scanner's own map when it has one
// (a plain map read by one goroutine is cheaper than the shared cache).
func (s *scanner) drops(key string) bool {
	if s.verdicts == nil || len(s.r.paths) > 0 {
		return s.r.drops(s.path, key)
	}
	if v, ok := s.verdicts[key]; ok {
		return v
	}
	v := s.r.dropsName(key)
	if len(s.verdicts) < maxCached {
		s.verdicts[strings.Clone(key)] = v
	}
	return v
}

// keyString is decodeString for field names, without a copy when the name
// has no escapes: the string views the record being scanned, so it must not
// outlive the scan (it is only compared, and cloned where kept).
func keyString(raw []byte, esc bool) string {
	inner := raw[1 : len(raw)-1]
	if esc || len(inner) == 0 || !utf8.Valid(inner) {
		return decodeString(raw, esc)
	}
	return unsafe.String(&inner[0], len(inner))
}

// decodeString returns the text of a validated string literal (quotes included in raw).
func decodeString(raw []byte, esc bool) string {
	inner := raw[1 : len(raw)-1]
	if !esc && utf8.Valid(inner) {
		return string(inner)
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(inner)
	}
	return v
}

// members reads the object at the scanner's position, calling fn with each
// field name (a view of the input, valid during the call); fn must read the field's value (skip, or one of the typed
// readers below). Field names are not pushed on the path.
func (s *scanner) members(fn func(key string) error) error {
	s.ws()
	if s.pos >= len(s.in) || s.in[s.pos] != '{' {
		return s.fail("expected an object")
	}
	s.pos++
	s.ws()
	if s.pos < len(s.in) && s.in[s.pos] == '}' {
		s.pos++
		return nil
	}
	for {
		s.ws()
		if s.pos >= len(s.in) || s.in[s.pos] != '"' {
			return s.fail("expected a field name")
		}
		start := s.pos
		esc, err := s.str()
		if err != nil {
			return err
		}
		key := keyString(s.in[start:s.pos], esc) // a view: fn clones what it keeps
		s.ws()
		if s.pos >= len(s.in) || s.in[s.pos] != ':' {
			return s.fail("expected ':'")
		}
		s.pos++
		s.ws()
		if err := fn(key); err != nil {
			return err
		}
		s.ws()
		if s.pos >= len(s.in) {
			return s.fail("unterminated object")
		}
		switch s.in[s.pos] {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.fail("expected ',' or '}'")
		}
	}
}

func (s *scanner) skip() error { return s.value(false, 1) }

func (s *scanner) null() bool {
	if bytes.HasPrefix(s.in[s.pos:], []byte("null")) {
		s.pos += 4
		return true
	}
	return false
}

// stringField reads a string (or null, as "").
func (s *scanner) stringField() (string, error) {
	if s.null() {
		return "", nil
	}
	if s.pos >= len(s.in) || s.in[s.pos] != '"' {
		return "", s.fail("expected a string")
	}
	start := s.pos
	esc, err := s.str()
	if err != nil {
		return "", err
	}
	return decodeString(s.in[start:s.pos], esc), nil
}

// intField reads a whole number (or null, as 0).
func (s *scanner) intField() (int, error) {
	if s.null() {
		return 0, nil
	}
	start := s.pos
	if s.pos >= len(s.in) || (s.in[s.pos] != '-' && (s.in[s.pos] < '0' || s.in[s.pos] > '9')) {
		return 0, s.fail("expected a number")
	}
	if err := s.number(); err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(string(s.in[start:s.pos]))
	if err != nil {
		return 0, fmt.Errorf("%w: %q is not a whole number", ErrNotJSON, s.in[start:s.pos])
	}
	return n, nil
}

// boolField reads true, false or null (as false).
func (s *scanner) boolField() (bool, error) {
	switch {
	case s.null():
		return false, nil
	case bytes.HasPrefix(s.in[s.pos:], []byte("true")):
		s.pos += 4
		return true, nil
	case bytes.HasPrefix(s.in[s.pos:], []byte("false")):
		s.pos += 5
		return false, nil
	}
	return false, s.fail("expected a boolean")
}

// timeField reads an RFC 3339 time (or null, as the zero time).
func (s *scanner) timeField() (time.Time, error) {
	v, err := s.stringField()
	if err != nil || v == "" {
		return time.Time{}, err
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	return t, nil
}
