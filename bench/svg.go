package main

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// The chart: two panels sharing the cells on the x axis, calls/s (median
// bar, min–max whisker) above and p99 latency below, both on log scales,
// one bar per system in each cell's group. Hand-written SVG.

var sysColor = map[string]string{
	"pulse":  "#d62728",
	"netrpc": "#1f77b4",
	"grpc":   "#2ca02c",
	"raw":    "#7f7f7f",
}

func colorOf(s string) string {
	if c, ok := sysColor[s]; ok {
		return c
	}
	return "#9467bd"
}

type svgPanel struct {
	title string
	value func(summary) (v, lo, hi float64) // lo, hi NaN for no whisker
	label func(float64) string              // a value, in tooltips
	axis  func(float64) string              // a decade, on the axis
}

func renderSVG(r *results) []byte {
	cells := r.chartCells()
	const (
		left    = 80.0
		right   = 20.0
		panelH  = 260.0
		top     = 70.0
		gap     = 70.0
		bottomX = 44.0 // room for the cell names, on two lines
	)
	nCells := max(len(cells), 1)
	// At least 72 px per cell, so that the names fit.
	width := math.Max(1000, left+right+72*float64(nCells))
	height := top + 2*panelH + gap + bottomX + 20
	plotW := width - left - right
	groupW := plotW / float64(nCells)
	nSys := max(len(r.Systems), 1)
	barW := math.Min(22, groupW*0.8/float64(nSys))

	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	w(`<rect x="0" y="0" width="%.0f" height="%.0f" fill="#ffffff"/>`+"\n", width, height)
	title := "Pulse vs net/rpc, grpc-go and raw TCP over loopback"
	if r.Config.Quick {
		title += " (quick run: noisy)"
	}
	w(`<text x="%.0f" y="22" font-size="16" font-weight="bold">%s</text>`+"\n", left, esc(title))
	sub := fmt.Sprintf("%s, %d cores; median of %d run(s) per cell; generated %s", r.Machine.CPU, r.Machine.Cores, r.Config.Runs, r.Generated)
	w(`<text x="%.0f" y="40" fill="#555555">%s</text>`+"\n", left, esc(sub))
	// Legend.
	lx := left
	for _, s := range r.Systems {
		w(`<rect x="%.1f" y="50" width="12" height="12" fill="%s"/>`, lx, colorOf(s))
		w(`<text x="%.1f" y="60">%s</text>`+"\n", lx+16, esc(sysLabel(s)))
		lx += 30 + 8*float64(len(sysLabel(s)))
	}

	panels := []svgPanel{
		{
			title: "calls/s (higher is better; whiskers: min–max over runs)",
			value: func(s summary) (float64, float64, float64) { return s.CPS, s.CPSMin, s.CPSMax },
			label: func(v float64) string { return fmtRate(v) + " calls/s" },
			axis:  siCount,
		},
		{
			title: "p99 latency (lower is better)",
			value: func(s summary) (float64, float64, float64) { return s.P99, math.NaN(), math.NaN() },
			label: func(v float64) string { return fmtDurF(v) },
			axis:  axisDur,
		},
	}
	for pi, p := range panels {
		y0 := top + float64(pi)*(panelH+gap) + 20 // top of plot area
		y1 := y0 + panelH - 20                    // bottom (the axis)
		// Range over every value, whiskers included.
		lo, hi := math.Inf(1), math.Inf(-1)
		for i := range cells {
			for _, s := range r.Systems {
				if sm, ok := cells[i].summary(s); ok {
					v, a, c := p.value(sm)
					for _, x := range []float64{v, a, c} {
						if x > 0 && !math.IsNaN(x) {
							lo, hi = math.Min(lo, x), math.Max(hi, x)
						}
					}
				}
			}
		}
		w(`<text x="%.0f" y="%.1f" font-size="13" font-weight="bold">%s</text>`+"\n", left, y0-8, esc(p.title))
		if math.IsInf(lo, 0) {
			w(`<text x="%.0f" y="%.1f" fill="#555555">no data</text>`+"\n", left+10, (y0+y1)/2)
			continue
		}
		dLo, dHi := math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if dHi <= dLo {
			dHi = dLo + 1
		}
		ypos := func(v float64) float64 {
			return y1 - (math.Log10(v)-dLo)/(dHi-dLo)*(y1-y0)
		}
		// Grid and y labels at each decade, light lines at 2x and 5x.
		for d := dLo; d <= dHi; d++ {
			v := math.Pow(10, d)
			y := ypos(v)
			w(`<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#cccccc"/>`, left, y, width-right, y)
			w(`<text x="%.0f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, esc(p.axis(v)))
			if d < dHi {
				for _, m := range []float64{2, 5} {
					y := ypos(v * m)
					w(`<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#eeeeee"/>`+"\n", left, y, width-right, y)
				}
			}
		}
		w(`<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#333333"/>`+"\n", left, y0, left, y1)
		w(`<line x1="%.0f" y1="%.1f" x2="%.0f" y2="%.1f" stroke="#333333"/>`+"\n", left, y1, width-right, y1)
		for i := range cells {
			c := &cells[i]
			gx := left + float64(i)*groupW + (groupW-barW*float64(nSys))/2
			for si, s := range r.Systems {
				sm, ok := c.summary(s)
				if !ok {
					continue
				}
				v, a, z := p.value(sm)
				if !(v > 0) {
					continue
				}
				x := gx + float64(si)*barW
				y := ypos(v)
				w(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s</title></rect>`+"\n",
					x+1, y, barW-2, math.Max(y1-y, 0.5), colorOf(s), esc(fmt.Sprintf("%s %s: %s", sysLabel(s), c.Name, p.label(v))))
				if a > 0 && z > 0 && !math.IsNaN(a) && !math.IsNaN(z) {
					cx := x + barW/2
					w(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#000000"/>`+"\n", cx, ypos(z), cx, ypos(a))
				}
			}
			// The name on two lines: "tls/64B" over "32x1".
			cx := left + float64(i)*groupW + groupW/2
			head, tail := c.Name, ""
			if k := strings.LastIndexByte(c.Name, '/'); k >= 0 {
				head, tail = c.Name[:k], c.Name[k+1:]
			}
			w(`<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, cx, y1+16, esc(head))
			w(`<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", cx, y1+30, esc(tail))
		}
	}
	w("</svg>\n")
	return []byte(b.String())
}

func esc(s string) string { return html.EscapeString(s) }

func siCount(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}

// axisDur labels a power of ten of nanoseconds.
func axisDur(ns float64) string {
	switch {
	case ns < 1e3:
		return fmt.Sprintf("%gns", ns)
	case ns < 1e6:
		return fmt.Sprintf("%gµs", ns/1e3)
	case ns < 1e9:
		return fmt.Sprintf("%gms", ns/1e6)
	}
	return fmt.Sprintf("%gs", ns/1e9)
}
