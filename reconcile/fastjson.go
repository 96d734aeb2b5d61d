package reconcile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// walker reads JSON in one pass without reflection: the hot path decodes a
// Stripe record (a ~4 kB body of which the reconciler reads a few dozen
// fields) several times faster than encoding/json. It accepts exactly the
// documents encoding/json accepts — every skipped value is validated — and
// fills fields as encoding/json would (the differential fuzz test
// FuzzFastStripeMatchesJSON holds it to that).
type walker struct {
	b []byte
	i int
}

var errSyntax = errors.New("invalid JSON")

func (w *walker) fail(what string) error {
	return fmt.Errorf("%w: %s at offset %d", errSyntax, what, w.i)
}

func (w *walker) ws() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

// peek returns the next non-space byte (0 at the end).
func (w *walker) peek() byte {
	w.ws()
	if w.i >= len(w.b) {
		return 0
	}
	return w.b[w.i]
}

// null consumes a null if one is next.
func (w *walker) null() bool {
	if w.peek() == 'n' && bytes.HasPrefix(w.b[w.i:], []byte("null")) {
		w.i += 4
		return true
	}
	return false
}

// object calls fn for each key of the object that is next; fn must consume
// the value. A null is an empty object (encoding/json leaves the field
// alone); any other value is a type error.
func (w *walker) object(fn func(key []byte) error) error {
	if w.null() {
		return nil
	}
	if w.peek() != '{' {
		if err := w.skip(); err != nil {
			return err
		}
		return errType
	}
	w.i++
	if w.peek() == '}' {
		w.i++
		return nil
	}
	for {
		if w.peek() != '"' {
			return w.fail("object key")
		}
		key, err := w.rawString()
		if err != nil {
			return err
		}
		if w.peek() != ':' {
			return w.fail("colon")
		}
		w.i++
		if err := fn(key); err != nil {
			return err
		}
		switch w.peek() {
		case ',':
			w.i++
		case '}':
			w.i++
			return nil
		default:
			return w.fail("object")
		}
	}
}

// array calls fn for each element of the array that is next (null: none).
func (w *walker) array(fn func() error) error {
	if w.null() {
		return nil
	}
	if w.peek() != '[' {
		if err := w.skip(); err != nil {
			return err
		}
		return errType
	}
	w.i++
	if w.peek() == ']' {
		w.i++
		return nil
	}
	for {
		if err := fn(); err != nil {
			return err
		}
		switch w.peek() {
		case ',':
			w.i++
		case ']':
			w.i++
			return nil
		default:
			return w.fail("array")
		}
	}
}

// errType is a well-formed value of the wrong type for its field; the
// document is still read to its end so a syntax error wins, as in
// encoding/json.
var errType = errors.New("value of the wrong type")

// rawString consumes a string and returns its bytes as written (between the
// quotes, escapes not decoded).
func (w *walker) rawString() ([]byte, error) {
	if w.peek() != '"' {
		return nil, w.fail("string")
	}
	w.i++
	start := w.i
	for w.i < len(w.b) {
		c := w.b[w.i]
		switch {
		case c == '"':
			s := w.b[start:w.i]
			w.i++
			return s, nil
		case c == '\\':
			w.i++
			if w.i >= len(w.b) {
				return nil, w.fail("escape")
			}
			switch w.b[w.i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				w.i++
			case 'u':
				if w.i+5 > len(w.b) {
					return nil, w.fail("escape")
				}
				for _, h := range w.b[w.i+1 : w.i+5] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return nil, w.fail("escape")
					}
				}
				w.i += 5
			default:
				return nil, w.fail("escape")
			}
		case c < 0x20:
			return nil, w.fail("control character in string")
		default:
			w.i++
		}
	}
	return nil, w.fail("unterminated string")
}

// text decodes the bytes of a string as encoding/json does (escapes,
// invalid UTF-8 replaced).
func text(raw []byte) string {
	if bytes.IndexByte(raw, '\\') < 0 && utf8.Valid(raw) {
		return string(raw)
	}
	var s string
	q := make([]byte, 0, len(raw)+2)
	q = append(append(append(q, '"'), raw...), '"')
	_ = json.Unmarshal(q, &s)
	return s
}

// str reads a string field: null leaves it, another type is a type error.
func (w *walker) str(dst *string) error {
	switch w.peek() {
	case '"':
		raw, err := w.rawString()
		if err != nil {
			return err
		}
		*dst = text(raw)
		return nil
	case 'n':
		if w.null() {
			return nil
		}
	}
	if err := w.skip(); err != nil {
		return err
	}
	return errType
}

// strPtr reads a *string field: null sets nil.
func (w *walker) strPtr(dst **string) error {
	if w.null() {
		*dst = nil
		return nil
	}
	var s string
	if err := w.str(&s); err != nil {
		return err
	}
	*dst = &s
	return nil
}

// int reads an int64 field: integers only, as encoding/json.
func (w *walker) int(dst *int64) error {
	if w.null() {
		return nil
	}
	c := w.peek()
	if c != '-' && (c < '0' || c > '9') {
		if err := w.skip(); err != nil {
			return err
		}
		return errType
	}
	start := w.i
	if err := w.number(); err != nil {
		return err
	}
	n, err := strconv.ParseInt(string(w.b[start:w.i]), 10, 64)
	if err != nil {
		return errType
	}
	*dst = n
	return nil
}

// intField reads an int field.
func (w *walker) intField(dst *int) error {
	var n int64
	if err := w.int(&n); err != nil {
		return err
	}
	if n != int64(int(n)) {
		return errType
	}
	*dst = int(n)
	return nil
}

func (w *walker) boolean(dst *bool) error {
	switch c := w.peek(); {
	case c == 't' && bytes.HasPrefix(w.b[w.i:], []byte("true")):
		w.i += 4
		*dst = true
		return nil
	case c == 'f' && bytes.HasPrefix(w.b[w.i:], []byte("false")):
		w.i += 5
		*dst = false
		return nil
	case w.null():
		return nil
	}
	if err := w.skip(); err != nil {
		return err
	}
	return errType
}

// number consumes a number per the JSON grammar.
func (w *walker) number() error {
	b, i := w.b, w.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return w.fail("number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return w.fail("number")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return w.fail("number")
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	w.i = i
	return nil
}

// skip consumes and validates any value.
func (w *walker) skip() error {
	return w.skipDepth(0)
}

func (w *walker) skipDepth(depth int) error {
	if depth > 10000 {
		return w.fail("exceeded max depth")
	}
	switch c := w.peek(); {
	case c == '"':
		_, err := w.rawString()
		return err
	case c == '{':
		w.i++
		if w.peek() == '}' {
			w.i++
			return nil
		}
		for {
			if _, err := w.rawString(); err != nil {
				return err
			}
			if w.peek() != ':' {
				return w.fail("colon")
			}
			w.i++
			if err := w.skipDepth(depth + 1); err != nil {
				return err
			}
			switch w.peek() {
			case ',':
				w.i++
			case '}':
				w.i++
				return nil
			default:
				return w.fail("object")
			}
		}
	case c == '[':
		w.i++
		if w.peek() == ']' {
			w.i++
			return nil
		}
		for {
			if err := w.skipDepth(depth + 1); err != nil {
				return err
			}
			switch w.peek() {
			case ',':
				w.i++
			case ']':
				w.i++
				return nil
			default:
				return w.fail("array")
			}
		}
	case c == 't' && bytes.HasPrefix(w.b[w.i:], []byte("true")):
		w.i += 4
	case c == 'f' && bytes.HasPrefix(w.b[w.i:], []byte("false")):
		w.i += 5
	case c == 'n' && bytes.HasPrefix(w.b[w.i:], []byte("null")):
		w.i += 4
	case c == '-' || c >= '0' && c <= '9':
		return w.number()
	default:
		return w.fail("value")
	}
	return nil
}

// end checks nothing but space follows the document.
func (w *walker) end() error {
	if w.peek() != 0 {
		return w.fail("data after the document")
	}
	return nil
}

// raw consumes a value and returns its bytes.
func (w *walker) raw() ([]byte, error) {
	w.ws()
	start := w.i
	if err := w.skip(); err != nil {
		return nil, err
	}
	return w.b[start:w.i], nil
}

// decodeInto consumes a value and decodes it with encoding/json into v, for
// the few fields whose semantics the walker leaves to it (times, expanded
// objects, metadata).
func (w *walker) decodeInto(v any) error {
	raw, err := w.raw()
	if err != nil {
		return err
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return errType
	}
	return nil
}
