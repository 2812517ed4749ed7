package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// writeVerbs are the verbs of apiserver_request_total that change state.
var writeVerbs = map[string]bool{
	"POST": true, "PUT": true, "PATCH": true, "APPLY": true, "DELETE": true, "DELETECOLLECTION": true,
	"CREATE": true, "UPDATE": true,
}

// writeCounts are a kube-apiserver's write requests so far, by
// "resource[/subresource] VERB".
type writeCounts map[string]float64

// parseWrites reads apiserver_request_total from a /metrics page (the
// Prometheus text format) and keeps the write verbs.
func parseWrites(page []byte) (writeCounts, error) {
	out := writeCounts{}
	sc := bufio.NewScanner(bytes.NewReader(page))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		end := strings.LastIndexByte(line, '}')
		if end < 0 {
			return nil, fmt.Errorf("malformed metric line %q", line)
		}
		labels, err := parseLabels(line[len("apiserver_request_total{"):end])
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		fields := strings.Fields(line[end+1:])
		if len(fields) == 0 {
			return nil, fmt.Errorf("malformed metric line %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		if !writeVerbs[labels["verb"]] {
			continue
		}
		key := labels["resource"]
		if g := labels["group"]; g != "" {
			key += "." + g
		}
		if sub := labels["subresource"]; sub != "" {
			key += "/" + sub
		}
		out[key+" "+labels["verb"]] += v
	}
	return out, sc.Err()
}

// parseLabels parses `a="x",b="y"` with Prometheus escapes.
func parseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for len(s) > 0 {
		eq := strings.IndexByte(s, '=')
		if eq < 0 || eq+1 >= len(s) || s[eq+1] != '"' {
			return nil, fmt.Errorf("bad labels at %q", s)
		}
		name := strings.TrimSpace(s[:eq])
		var val strings.Builder
		i := eq + 2
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			val.WriteByte(s[i])
		}
		if i >= len(s) {
			return nil, fmt.Errorf("unterminated label value at %q", s)
		}
		out[name] = val.String()
		s = strings.TrimPrefix(s[i+1:], ",")
	}
	return out, nil
}

// sub returns after minus before.
func (after writeCounts) sub(before writeCounts) writeCounts {
	out := writeCounts{}
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			out[k] = d
		}
	}
	return out
}

// total sums the counts, leaving out the resources named in except
// (e.g. "leases.coordination.k8s.io", whose renewals depend on time and
// the number of nodes, not on pods).
func (w writeCounts) total(except ...string) float64 {
	var t float64
	for k, v := range w {
		res, _, _ := strings.Cut(k, " ")
		res, _, _ = strings.Cut(res, "/")
		skip := false
		for _, e := range except {
			skip = skip || res == e
		}
		if !skip {
			t += v
		}
	}
	return t
}

func (c *cluster) writes(ctx context.Context) (writeCounts, error) {
	page, err := c.kube.Discovery().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s /metrics: %w", c.Context, err)
	}
	w, err := parseWrites(page)
	if err != nil {
		return nil, fmt.Errorf("%s /metrics: %w", c.Context, err)
	}
	return w, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go runs on.
const clockTicks = 100

// procSample is a process's CPU time so far.
type procSample struct {
	pid int
	cpu float64 // seconds, user + system
}

// readProc reads utime and stime from /proc/PID/stat.
func readProc(pid int) (procSample, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procSample{}, err
	}
	cpu, err := parseStat(string(data))
	return procSample{pid: pid, cpu: cpu}, err
}

// parseStat returns utime+stime in seconds from a /proc/PID/stat line; the
// command (field 2) may hold spaces and parentheses, so fields are counted
// from its closing parenthesis.
func parseStat(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("malformed stat %q", stat)
	}
	return float64(u+s) / clockTicks, nil
}

// resetPeakRSS makes VmHWM start again from the current RSS (Linux
// clear_refs, value 5); the process must be ours.
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// peakRSS returns VmHWM in MiB.
func peakRSS(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return parseHWM(string(data))
}

func parseHWM(status string) (float64, error) {
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			f := strings.Fields(rest)
			if len(f) != 2 || f[1] != "kB" {
				return 0, fmt.Errorf("malformed %q", line)
			}
			kb, err := strconv.ParseFloat(f[0], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in status")
}

// settleBusy and settleMax: the steady phase starts once the machine's CPUs
// were less than settleBusy busy over a second (an idle sandbox of three
// clusters keeps them about 6% busy), or after settleMax.
const (
	settleBusy = 0.25
	settleMax  = 20 * time.Second
)

// settle waits until the machine's CPUs were less than busy (a fraction)
// busy over one second, at most max, and says how long it waited.
func settle(ctx context.Context, busy float64, max time.Duration) (time.Duration, error) {
	start := time.Now()
	prev, err := readCPUs()
	if err != nil {
		return 0, err
	}
	for time.Since(start) < max {
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(time.Second):
		}
		cur, err := readCPUs()
		if err != nil {
			return 0, err
		}
		total := cur.total - prev.total
		if total > 0 && float64(total-(cur.idle-prev.idle))/float64(total) < busy {
			break
		}
		prev = cur
	}
	return time.Since(start), nil
}

// cpuTimes are the machine's CPU times in clock ticks (/proc/stat).
type cpuTimes struct{ total, idle uint64 }

func readCPUs() (cpuTimes, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	return parseCPUs(string(data))
}

// parseCPUs reads the "cpu" line of /proc/stat: user nice system idle
// iowait irq softirq steal ...; idle and iowait count as idle.
func parseCPUs(stat string) (cpuTimes, error) {
	line, _, _ := strings.Cut(stat, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var t cpuTimes
	for i, s := range f[1:9] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return cpuTimes{}, fmt.Errorf("/proc/stat: %q: %w", line, err)
		}
		t.total += v
		if i == 3 || i == 4 {
			t.idle += v
		}
	}
	return t, nil
}
