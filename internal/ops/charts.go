package ops

import (
	"fmt"
	"html"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/launchready/launchready/dashboards"
)

// Chart geometry, in SVG user units (the SVG scales to its box).
const (
	chartW, chartH       = 640, 240
	padL, padR           = 64, 12
	padT, padB           = 12, 28
	plotW, plotH         = chartW - padL - padR, chartH - padT - padB
	legendRow, legendCol = 16, 200
)

// palette are the series colours, distinct on light backgrounds.
var palette = []string{"#2f6fde", "#e0533d", "#27a35a", "#b05ed6", "#e6a117", "#17a2b8", "#d6457e", "#6b7a8f"}

// niceMax rounds v up to 1, 2, 2.5 or 5 times a power of ten.
func niceMax(v float64) float64 {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func esc(s string) string { return html.EscapeString(s) }

// lineChart draws series over [from, to] with a filled area under each line,
// a y axis with four gridlines and a legend under the plot.
func lineChart(series []dashboards.Series, from, to time.Time, unit string) template.HTML {
	if len(series) == 0 {
		return emptyChart("no data in this range")
	}
	top := 0.0
	for _, s := range series {
		for _, p := range s.Points {
			top = math.Max(top, p.Value)
		}
	}
	top = niceMax(top)
	span := to.Sub(from).Seconds()
	x := func(t time.Time) float64 {
		return padL + math.Max(0, math.Min(1, t.Sub(from).Seconds()/span))*plotW
	}
	y := func(v float64) float64 { return padT + plotH - math.Max(0, v)/top*plotH }
	rows := (len(series) + 2) / 3
	height := chartH + rows*legendRow + 4
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" role="img" viewBox="0 0 %d %d" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">`, chartW, height)
	axes(&b, top, unit, from, to)
	for i, s := range series {
		color := palette[i%len(palette)]
		var line, area strings.Builder
		for j, p := range s.Points {
			fmt.Fprintf(&line, "%.1f,%.1f ", x(p.At), y(p.Value))
			if j == 0 {
				fmt.Fprintf(&area, "M%.1f,%.1f ", x(p.At), y(0))
			}
			fmt.Fprintf(&area, "L%.1f,%.1f ", x(p.At), y(p.Value))
			if j == len(s.Points)-1 {
				fmt.Fprintf(&area, "L%.1f,%.1f Z", x(p.At), y(0))
			}
		}
		fmt.Fprintf(&b, `<path class="area" d="%s" fill="%s" fill-opacity="0.18" stroke="none"/>`, area.String(), color)
		fmt.Fprintf(&b, `<polyline class="series" data-series="%s" points="%s" fill="none" stroke="%s" stroke-width="2.5" stroke-linejoin="round"/>`, esc(s.Name), strings.TrimSpace(line.String()), color)
		for _, p := range s.Points {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s %s: %s</title></circle>`, x(p.At), y(p.Value), color,
				esc(s.Name), p.At.UTC().Format("2006-01-02 15:04"), esc(formatValue(p.Value, unit)))
		}
		lx, ly := padL+(i%3)*legendCol, chartH+(i/3)*legendRow
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d" class="legend">%s</text>`, lx, ly, color, lx+14, ly+9, esc(s.Name))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// axes draws the y gridlines with labels and the time range under the plot.
func axes(b *strings.Builder, top float64, unit string, from, to time.Time) {
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#fbfcfe" stroke="#d5dae3"/>`, padL, padT, plotW, plotH)
	for i := 0; i <= 4; i++ {
		v := top * float64(i) / 4
		yy := float64(padT+plotH) - float64(i)/4*plotH
		fmt.Fprintf(b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#e3e7ee"/>`, padL, padL+plotW, yy, yy)
		fmt.Fprintf(b, `<text x="%d" y="%.1f" text-anchor="end" class="axis">%s</text>`, padL-6, yy+4, esc(formatValue(v, unit)))
	}
	fmt.Fprintf(b, `<text x="%d" y="%d" class="axis">%s</text>`, padL, padT+plotH+16, from.UTC().Format("Jan 2 15:04"))
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="end" class="axis">%s UTC</text>`, padL+plotW, padT+plotH+16, to.UTC().Format("Jan 2 15:04"))
}

type bar struct {
	label string
	value float64
}

// barChart draws one horizontal bar per label.
func barChart(bars []bar, unit string) template.HTML {
	if len(bars) == 0 {
		return emptyChart("none")
	}
	top := 0.0
	for _, br := range bars {
		top = math.Max(top, br.value)
	}
	top = niceMax(top)
	const rowH = 28
	height := padT + len(bars)*rowH + padB
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart bars" role="img" viewBox="0 0 %d %d" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">`, chartW, height)
	const labelW = 200
	width := float64(chartW - labelW - padR - 60)
	for i, br := range bars {
		yy := padT + i*rowH
		w := math.Max(2, br.value/top*width)
		color := palette[i%len(palette)]
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" class="legend">%s</text>`, labelW-8, yy+17, esc(br.label))
		fmt.Fprintf(&b, `<rect class="bar" x="%d" y="%d" width="%.1f" height="%d" rx="3" fill="%s"/>`, labelW, yy+4, w, rowH-8, color)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" class="axis">%s</text>`, float64(labelW)+w+6, yy+17, esc(formatValue(br.value, unit)))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

func emptyChart(msg string) template.HTML {
	return template.HTML(fmt.Sprintf(`<svg class="chart empty" viewBox="0 0 %d 60" xmlns="http://www.w3.org/2000/svg"><text x="%d" y="34" text-anchor="middle" class="axis">%s</text></svg>`,
		chartW, chartW/2, esc(msg)))
}
