package main

import (
	"math"
	"sort"
	"time"
)

// percentile returns the p-th percentile (0 < p <= 100) of xs by the
// nearest-rank method; 0 for no samples (JSON has no NaN).
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	if rank < 1 {
		rank = 1
	}
	return s[rank-1]
}

// Percentiles of a distribution.
type Percentiles struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

func percentilesOf(xs []float64) Percentiles {
	return Percentiles{P50: percentile(xs, 50), P90: percentile(xs, 90), P99: percentile(xs, 99)}
}

// Throughput is the scheduling throughput of a phase, like scheduler_perf
// reports it: pods bound in each whole second since the phase began, and
// the average over the phase.
type Throughput struct {
	Average float64 `json:"average"`
	Percentiles
	// Samples are pods bound per second, second by second from the first
	// creation to the last binding (the last, partial second left out).
	Samples []float64 `json:"samples"`
	// Seconds from the first creation to the last binding.
	Seconds float64 `json:"seconds"`
}

// throughputOf computes the throughput of binds that happened from start on.
func throughputOf(start time.Time, binds []time.Time) Throughput {
	if len(binds) == 0 {
		return Throughput{}
	}
	last := start
	for _, b := range binds {
		if b.After(last) {
			last = b
		}
	}
	d := last.Sub(start).Seconds()
	whole := int(d)
	t := Throughput{Seconds: d}
	if whole == 0 {
		// Everything within a second: one sample, scaled.
		t.Samples = []float64{float64(len(binds)) / math.Max(d, 1e-3)}
	} else {
		t.Samples = make([]float64, whole)
		for _, b := range binds {
			if i := int(b.Sub(start).Seconds()); i >= 0 && i < whole {
				t.Samples[i]++
			}
		}
	}
	t.Average = float64(len(binds)) / math.Max(d, 1e-3)
	t.Percentiles = percentilesOf(t.Samples)
	return t
}

// Spread is the median, minimum and maximum of a figure over runs; N = 0
// when no run measured it.
type Spread struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"`
}

func spreadOf(xs []float64) Spread {
	var ok []float64
	for _, x := range xs {
		if !math.IsNaN(x) && !math.IsInf(x, 0) {
			ok = append(ok, x)
		}
	}
	if len(ok) == 0 {
		return Spread{}
	}
	sort.Float64s(ok)
	m := ok[len(ok)/2]
	if len(ok)%2 == 0 {
		m = (ok[len(ok)/2-1] + ok[len(ok)/2]) / 2
	}
	return Spread{Median: m, Min: ok[0], Max: ok[len(ok)-1], N: len(ok)}
}
