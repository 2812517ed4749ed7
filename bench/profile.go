package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/rest"
)

// profile saves CPU profiles (pprof) of the kube-apiserver and the
// scheduler of every cluster used, taken over the given seconds from now,
// as <prefix>-<cluster>-<process>.pprof; `go tool pprof -top FILE` reads
// them. kube-apiserver and the scheduler serve /debug/pprof to the admin
// (the harness authenticates to the scheduler with the admin kubeconfig's
// client certificate, which it checks and authorizes through the API
// server); a failure is said in the log, not fatal. The delegator serves
// pprof only with --profiling, which the sandbox does not set.
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
			tlsConfig, err := rest.TLSConfigFor(c.admin)
			if err != nil || tlsConfig == nil {
				save(c, procScheduler, nil, fmt.Errorf("the admin's client certificate: %v", err))
				return
			}
			// The scheduler's serving certificate is self-signed.
			tlsConfig.InsecureSkipVerify, tlsConfig.RootCAs = true, nil
			client := &http.Client{
				Timeout:   time.Duration(seconds+30) * time.Second,
				Transport: &http.Transport{TLSClientConfig: tlsConfig},
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
				err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(data))
			}
			save(c, procScheduler, data, err)
		}()
	}
	return &wg
}
