package main

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"strings"
)

var palette = []string{"#555555", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"}

// plot draws, for the last run of each scenario, the pods bound per second
// (top) and the creation-to-Running latency of the pods created in each
// second, median and maximum, on a log scale (bottom), against seconds
// since the first creation. Hand-written SVG, no dependencies.
func plot(r *Report) []byte {
	last := map[string]*Result{}
	for _, res := range r.Results {
		last[res.Scenario] = res
	}
	const (
		w, h               = 960, 640
		left, right        = 70, 20
		top1, bottom1      = 40, 300
		top2, bottom2      = 360, 600
		latMin, latDecades = 0.01, 4 // 10 ms .. 100 s
	)
	var tmax, bmax float64 = 1, 1
	for _, res := range last {
		tmax = math.Max(tmax, float64(len(res.Series.Binds)))
		tmax = math.Max(tmax, float64(len(res.Series.LatencyP50)))
		for _, v := range res.Series.Binds {
			bmax = math.Max(bmax, v)
		}
	}
	tmax = niceCeil(tmax)
	bmax = niceCeil(bmax * 1.05)
	x := func(t float64) float64 { return left + (w-left-right)*t/tmax }
	y1 := func(v float64) float64 { return bottom1 - (bottom1-top1)*v/bmax }
	y2 := func(v float64) float64 {
		v = math.Max(v, latMin)
		d := math.Log10(v/latMin) / latDecades
		return bottom2 - (bottom2-top2)*math.Min(d, 1)
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	title := fmt.Sprintf("make bench %s: K=%d, then %d at %.0f/s, %d kwok nodes (last run of each scenario)",
		r.Started.Format("2006-01-02 15:04 UTC"), r.Config.Pods, r.Config.SteadyPods, r.Config.SteadyRate, r.Config.Nodes)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14">%s</text>`+"\n", left, html.EscapeString(title))

	// Axes and grid.
	axes := func(top, bottom float64, label string) {
		fmt.Fprintf(&b, `<line x1="%d" y1="%g" x2="%d" y2="%g" stroke="black"/>`+"\n", left, bottom, w-right, bottom)
		fmt.Fprintf(&b, `<line x1="%d" y1="%g" x2="%d" y2="%g" stroke="black"/>`+"\n", left, top, left, bottom)
		fmt.Fprintf(&b, `<text x="15" y="%g" transform="rotate(-90 15 %g)" text-anchor="middle">%s</text>`+"\n", (top+bottom)/2, (top+bottom)/2, label)
		step := niceStep(tmax)
		for t := 0.0; t <= tmax+1e-9; t += step {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%g" x2="%.1f" y2="%g" stroke="#ddd"/>`+"\n", x(t), top, x(t), bottom)
			fmt.Fprintf(&b, `<text x="%.1f" y="%g" text-anchor="middle">%g</text>`+"\n", x(t), bottom+15, t)
		}
	}
	axes(top1, bottom1, "pods bound per second")
	for v, step := 0.0, niceStep(bmax); v <= bmax+1e-9; v += step {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y1(v), w-right, y1(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", left-5, y1(v)+4, v)
	}
	axes(top2, bottom2, "creation → Running (s), log")
	for d := 0; d <= latDecades; d++ {
		v := latMin * math.Pow(10, float64(d))
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y2(v), w-right, y2(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n", left-5, y2(v)+4, v)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">seconds since the first creation (pods created in that second, for latency)</text>`+"\n", (left+w-right)/2, bottom2+32)

	for i, sc := range r.Scenarios {
		res := last[sc]
		if res == nil {
			continue
		}
		color := palette[i%len(palette)]
		s := res.Series
		var pts []string
		for t, v := range s.Binds {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(t)+0.5), y1(v)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", color, strings.Join(pts, " "))
		line := func(vals []float64, dash string) {
			var seg []string
			flush := func() {
				if len(seg) > 0 {
					fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" %s points="%s"/>`+"\n", color, dash, strings.Join(seg, " "))
				}
				seg = nil
			}
			for t, v := range vals {
				if v < 0 { // no pod created in that second
					flush()
					continue
				}
				seg = append(seg, fmt.Sprintf("%.1f,%.1f", x(float64(t)+0.5), y2(v)))
			}
			flush()
		}
		line(s.LatencyP50, "")
		line(s.LatencyMax, `stroke-dasharray="4 3"`)
		// When the steady phase began.
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-dasharray="2 4"/>`+"\n", x(s.SteadyStart), top1, x(s.SteadyStart), bottom2, color)
		// Legend.
		lx, ly := float64(w-right-260), float64(top1+10+18*i)
		fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="%s" stroke-width="3"/>`+"\n", lx, ly, lx+20, ly, color)
		fmt.Fprintf(&b, `<text x="%.0f" y="%.0f">%s (run %d)</text>`+"\n", lx+26, ly+4, html.EscapeString(sc), res.Run)
	}
	ly := float64(top2 + 10)
	lx := float64(w - right - 260)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black"/><text x="%.0f" y="%.0f">median of the second's pods</text>`+"\n", lx, ly, lx+20, ly, lx+26, ly+4)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black" stroke-dasharray="4 3"/><text x="%.0f" y="%.0f">maximum</text>`+"\n", lx, ly+18, lx+20, ly+18, lx+26, ly+22)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="black" stroke-dasharray="2 4"/><text x="%.0f" y="%.0f">steady phase begins</text>`+"\n", lx, ly+36, lx+20, ly+36, lx+26, ly+40)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// niceStep is a round grid step for an axis from 0 to v (about 5 to 10 steps).
func niceStep(v float64) float64 {
	if v <= 0 {
		return 1
	}
	raw := v / 6
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*mag {
			return m * mag
		}
	}
	return 10 * mag
}

// niceCeil rounds v up to a multiple of its grid step.
func niceCeil(v float64) float64 {
	s := niceStep(v)
	return math.Ceil(v/s) * s
}
