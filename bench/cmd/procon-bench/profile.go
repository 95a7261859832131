package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"time"
)

// profiler collects procon-cdc's CPU profile through run --pprof: back-to-back 2-second
// profiles from its start until stop, merged at the end.
type profiler struct {
	files  []string
	stopCh chan struct{}
	wg     sync.WaitGroup
}

func startProfiler(ctx context.Context, addr, base string) *profiler {
	p := &profiler{stopCh: make(chan struct{})}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		url := "http://" + addr + "/debug/pprof/profile?seconds=2"
		for i := 0; ; i++ {
			select {
			case <-p.stopCh:
				return
			case <-ctx.Done():
				return
			default:
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil { // not listening yet, or gone
				time.Sleep(10 * time.Millisecond)
				continue
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK || len(body) == 0 {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			f := fmt.Sprintf("%s.cpu.%03d.pprof", base, i)
			if os.WriteFile(f, body, 0o644) == nil {
				p.files = append(p.files, f)
			}
		}
	}()
	return p
}

// stop waits for the profile in flight (it covers the end of the run) and stops.
func (p *profiler) stop() {
	select {
	case <-p.stopCh:
	default:
		close(p.stopCh)
	}
	p.wg.Wait()
}

// finish merges the profiles into out and writes `go tool pprof -top` of it to out.top.txt.
func (p *profiler) finish(b *bench, out string) string {
	p.stop()
	if len(p.files) == 0 {
		return ""
	}
	args := append([]string{"tool", "pprof", "-proto"}, p.files...)
	merged, err := exec.Command("go", args...).Output()
	if err != nil {
		b.logf("merging profiles: %v", err)
		return p.files[0]
	}
	if err := os.MkdirAll(b.o.outDir, 0o755); err != nil {
		return p.files[0]
	}
	if err := os.WriteFile(out, merged, 0o644); err != nil {
		return p.files[0]
	}
	if top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=40", out).Output(); err == nil {
		_ = os.WriteFile(out+".top.txt", top, 0o644)
	}
	return out
}
