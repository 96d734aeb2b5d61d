package cdc

import (
	"fmt"
	"strconv"
	"strings"
)

// LSN is a position in the Postgres write-ahead log.
type LSN uint64

// String formats the LSN as Postgres does (pg_lsn text form, e.g. 0/16B3748).
func (l LSN) String() string { return string(appendLSN(nil, l)) }

const hexDigits = "0123456789ABCDEF"

// appendLSN appends the pg_lsn text form of l to dst without allocating.
func appendLSN(dst []byte, l LSN) []byte {
	dst = appendHex32(dst, uint32(l>>32))
	dst = append(dst, '/')
	return appendHex32(dst, uint32(l))
}

func appendHex32(dst []byte, v uint32) []byte {
	if v == 0 {
		return append(dst, '0')
	}
	var b [8]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = hexDigits[v&0xF]
		v >>= 4
	}
	return append(dst, b[i:]...)
}

// ParseLSN parses the pg_lsn text form ("16/B374D848").
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok || hi == "" || lo == "" || len(hi) > 8 || len(lo) > 8 {
		return 0, fmt.Errorf("invalid LSN %q", s)
	}
	h, err := strconv.ParseUint(hi, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid LSN %q", s)
	}
	l, err := strconv.ParseUint(lo, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("invalid LSN %q", s)
	}
	return LSN(h<<32 | l), nil
}
