package dashboards

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Querier is the part of a ClickHouse connection a panel query needs.
type Querier interface {
	Query(ctx context.Context, query string, args ...any) (driver.Rows, error)
}

// Result is a query's columns and rows, each value as the driver scanned it
// (time.Time, string, integers, float64, slices).
type Result struct {
	Columns []string
	Rows    [][]any
}

// Query runs a panel's SQL (macros already expanded) and scans every row.
func Query(ctx context.Context, q Querier, sql string) (*Result, error) {
	rows, err := q.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	types := rows.ColumnTypes()
	res := &Result{Columns: rows.Columns()}
	for rows.Next() {
		ptrs := make([]any, len(types))
		for i, ct := range types {
			ptrs[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]any, len(ptrs))
		for i, p := range ptrs {
			row[i] = reflect.ValueOf(p).Elem().Interface()
		}
		res.Rows = append(res.Rows, row)
	}
	return res, rows.Err()
}

// Number converts a scanned numeric value to float64.
func Number(v any) (float64, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Float32, reflect.Float64:
		return rv.Float(), true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(rv.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return float64(rv.Uint()), true
	}
	return 0, false
}

// Point is one value of a series.
type Point struct {
	At    time.Time
	Value float64
}

// Series is one line of a time series panel.
type Series struct {
	Name   string
	Points []Point
}

// TimeSeries reads a time series result the way the ClickHouse data source
// does: the first time column is the x axis; string columns name the series
// (long form), each numeric column is a value (wide form, named after it
// when there are several). Series are sorted by name.
func (r *Result) TimeSeries() ([]Series, error) {
	tcol := -1
	var labels, values []int
	if len(r.Rows) == 0 {
		return nil, nil
	}
	for i, v := range r.Rows[0] {
		switch v.(type) {
		case time.Time:
			if tcol < 0 {
				tcol = i
			}
		case string:
			labels = append(labels, i)
		default:
			if _, ok := Number(v); ok {
				values = append(values, i)
			}
		}
	}
	if tcol < 0 || len(values) == 0 {
		return nil, fmt.Errorf("a time series needs a time column and a numeric column, got %v", r.Columns)
	}
	by := map[string]*Series{}
	for _, row := range r.Rows {
		var parts []string
		for _, i := range labels {
			parts = append(parts, row[i].(string))
		}
		for _, i := range values {
			name := strings.Join(parts, " ")
			if len(values) > 1 || name == "" {
				name = strings.TrimSpace(name + " " + r.Columns[i])
			}
			s := by[name]
			if s == nil {
				s = &Series{Name: name}
				by[name] = s
			}
			x, _ := Number(row[i])
			s.Points = append(s.Points, Point{At: row[tcol].(time.Time), Value: x})
		}
	}
	out := make([]Series, 0, len(by))
	for _, s := range by {
		sort.Slice(s.Points, func(i, j int) bool { return s.Points[i].At.Before(s.Points[j].At) })
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
