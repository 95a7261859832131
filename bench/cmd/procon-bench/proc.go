package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a contender's process.
type proc struct {
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{} // closed when Wait returned
	ended   time.Time
	waitErr error
	log     *os.File
}

// startProc starts args[0] with its stderr (and stdout, unless stdout is given) in logPath,
// in its own process group, killed if the bench dies.
func startProc(logPath string, stdout io.Writer, envv []string, args ...string) (*proc, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = f
	cmd.Stdout = f
	if stdout != nil {
		cmd.Stdout = stdout
	}
	cmd.Env = append(os.Environ(), envv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &proc{cmd: cmd, exited: make(chan struct{}), log: f}
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() {
		p.waitErr = cmd.Wait()
		p.ended = time.Now()
		f.Close()
		close(p.exited)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) done() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to grace for the exit, then kills the process group.
func (p *proc) stop(grace time.Duration) {
	if p.done() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(grace):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.exited
	}
}

func (p *proc) kill() {
	if !p.done() {
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.exited
	}
}

func (p *proc) exitCode() int {
	if p.cmd.ProcessState == nil {
		return -1
	}
	return p.cmd.ProcessState.ExitCode()
}

// rusage is the CPU seconds and peak RSS (KiB) of an exited process and its waited children.
func (p *proc) rusage() (cpu float64, maxRSSKiB int64) {
	st := p.cmd.ProcessState
	if st == nil {
		return 0, 0
	}
	ru, ok := st.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, 0
	}
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime), ru.Maxrss
}

// usage is one reading of a process tree's resources.
type usage struct {
	CPU     float64 // user + sys seconds, live processes plus their waited-for children
	HWMKiB  int64   // sum of VmHWM over the tree
	RSSKiB  int64   // sum of VmRSS over the tree
	Procs   int
	ReadErr bool
}

// treeUsage reads /proc/<pid>/stat and status of pid and all its descendants.
func treeUsage(pid int, clkTck int64) usage {
	var u usage
	pids := descendants(pid)
	for _, p := range pids {
		st, ok := readStat(p)
		if !ok {
			if p == pid {
				u.ReadErr = true
			}
			continue
		}
		u.Procs++
		u.CPU += float64(st.utime+st.stime+st.cutime+st.cstime) / float64(clkTck)
		hwm, rss := readMem(p)
		u.HWMKiB += hwm
		u.RSSKiB += rss
	}
	return u
}

type stat struct {
	ppid                         int
	utime, stime, cutime, cstime int64
}

func readStat(pid int) (stat, bool) {
	raw, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return stat{}, false
	}
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return stat{}, false
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 15 {
		return stat{}, false
	}
	n := func(field int) int64 { v, _ := strconv.ParseInt(f[field-3], 10, 64); return v }
	return stat{ppid: int(n(4)), utime: n(14), stime: n(15), cutime: n(16), cstime: n(17)}, true
}

func readMem(pid int) (hwm, rss int64) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			hwm, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		} else if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			rss, _ = strconv.ParseInt(strings.Fields(v)[0], 10, 64)
		}
	}
	return hwm, rss
}

// descendants is pid and every live process below it, from /proc/<pid>/task/*/children
// (cheap), or by scanning every process's stat where the kernel lacks those files.
func descendants(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		files, _ := filepath.Glob("/proc/" + strconv.Itoa(out[i]) + "/task/*/children")
		if len(files) == 0 {
			if i == 0 {
				return descendantsByScan(pid)
			}
			continue
		}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil {
				continue
			}
			for _, c := range strings.Fields(string(raw)) {
				if n, err := strconv.Atoi(c); err == nil {
					out = append(out, n)
				}
			}
		}
	}
	return out
}

func descendantsByScan(pid int) []int {
	children := map[int][]int{}
	entries, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, e := range entries {
		p, err := strconv.Atoi(filepath.Base(filepath.Dir(e)))
		if err != nil || p == pid {
			continue
		}
		if st, ok := readStat(p); ok {
			children[st.ppid] = append(children[st.ppid], p)
		}
	}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// machineCPU is the busy CPU seconds of the whole machine so far (/proc/stat).
func machineCPU(clkTck int64) float64 {
	raw, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(raw), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	var busy int64
	for i := 1; i < len(f); i++ {
		if i == 4 || i == 5 { // idle, iowait
			continue
		}
		if i > 8 { // guest times are already in user
			break
		}
		v, _ := strconv.ParseInt(f[i], 10, 64)
		busy += v
	}
	return float64(busy) / float64(clkTck)
}

// pidCPU is one process's own CPU seconds (no children), 0 if it is gone.
func pidCPU(pid int, clkTck int64) float64 {
	if pid <= 0 {
		return 0
	}
	st, ok := readStat(pid)
	if !ok {
		return 0
	}
	return float64(st.utime+st.stime) / float64(clkTck)
}
