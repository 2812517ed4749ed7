package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// profile saves CPU profiles (pprof) of the kube-apiserver and the
// scheduler of every cluster used, taken over the given seconds from now,
// as <prefix>-<cluster>-<process>.pprof; `go tool pprof -top FILE` reads
// them. kube-apiserver serves /debug/pprof to the admin; the scheduler only
// when its --authorization-always-allow-paths lists /debug/pprof/* (it has
// no authorizer otherwise), which is said in the log, not a failure. The
// delegator serves no pprof.
func profile(ctx context.Context, used []*cluster, seconds int, prefix string) *sync.WaitGroup {
	var wg sync.WaitGroup
	save := func(c *cluster, proc string, data []byte, err error) {
		if err != nil {
			log.Printf("profile of %s %s: %v", c.Context, proc, err)
			return
		}
		path := fmt.Sprintf("%s-%s-%s.pprof", prefix, c.Context, proc)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			log.Printf("profile of %s %s: %v", c.Context, proc, err)
			return
		}
		log.Printf("wrote %s", path)
	}
	if err := os.MkdirAll(filepath.Dir(prefix), 0o755); err != nil {
		log.Printf("profiles: %v", err)
		return &wg
	}
	for _, c := range used {
		wg.Add(2)
		go func() {
			defer wg.Done()
			data, err := c.kube.Discovery().RESTClient().Get().AbsPath("/debug/pprof/profile").
				Param("seconds", strconv.Itoa(seconds)).DoRaw(ctx)
			save(c, procAPIServer, data, err)
		}()
		go func() {
			defer wg.Done()
			port, err := c.schedulerPort()
			if err != nil {
				save(c, procScheduler, nil, err)
				return
			}
			// The scheduler's serving certificate is self-signed.
			client := &http.Client{
				Timeout:   time.Duration(seconds+30) * time.Second,
				Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet,
				fmt.Sprintf("https://127.0.0.1:%s/debug/pprof/profile?seconds=%d", port, seconds), nil)
			resp, err := client.Do(req)
			if err != nil {
				save(c, procScheduler, nil, err)
				return
			}
			defer resp.Body.Close()
			data, err := io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s (add /debug/pprof/* to the scheduler's --authorization-always-allow-paths)", resp.Status)
			}
			save(c, procScheduler, data, err)
		}()
	}
	return &wg
}
