package rehearsal

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Spec is how one process of the rehearsal is started, kept in the state
// file so that drill, status and down (later invocations) can stop and
// start it again exactly as up did.
type Spec struct {
	Name string   `json:"name"`
	Path string   `json:"path"`
	Args []string `json:"args"`
	// Env is the whole environment: nothing of the caller's shell leaks
	// into a process (a stray SYNCBRIDGE_* there would change a worker).
	Env []string `json:"env"`
	Dir string   `json:"dir,omitempty"`
	// Ready is "http://..." (answers 2xx) or "tcp:host:port" (accepts).
	Ready string `json:"ready"`
	// Ports are the addresses it listens on, checked free before start
	// and after stop.
	Ports []string `json:"ports"`
}

// State is DIR/state.json.
type State struct {
	Workers   int               `json:"workers"`
	Flood     bool              `json:"flood"`
	Specs     map[string]Spec   `json:"specs"`
	Order     []string          `json:"order"` // start order; down stops in reverse
	Export    [][2]string       `json:"export"`
	Settings  map[string]string `json:"settings"`
	PGCluster string            `json:"pgCluster"`
}

// cluster is the process table of one rehearsal directory.
type cluster struct {
	dir   string
	state State
	pids  map[string]int
	// children are processes this invocation started: they must be
	// waited for, or a killed one stays a zombie until we exit.
	children map[int]*exec.Cmd
}

func (c *cluster) path(name string) string { return filepath.Join(c.dir, name) }

func loadCluster(dir string) (*cluster, error) {
	c := &cluster{dir: dir, pids: map[string]int{}, children: map[int]*exec.Cmd{}}
	b, err := os.ReadFile(c.path("state.json"))
	if err != nil {
		return nil, fmt.Errorf("rehearsal: no rehearsal in %s (run up first): %w", dir, err)
	}
	if err := json.Unmarshal(b, &c.state); err != nil {
		return nil, fmt.Errorf("rehearsal: %s: %w", c.path("state.json"), err)
	}
	f, err := os.Open(c.path("pids"))
	if err != nil {
		return c, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, pid, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		if n, err := strconv.Atoi(pid); ok && err == nil {
			c.pids[name] = n
		}
	}
	return c, sc.Err()
}

func (c *cluster) saveState() error {
	b, err := json.MarshalIndent(c.state, "", "  ")
	if err != nil {
		return err
	}
	// 0600: it holds the emulator secret, the database password and the
	// payload key.
	return os.WriteFile(c.path("state.json"), b, 0o600)
}

// savePids writes DIR/pids, one "name pid" line per process, in start
// order.
func (c *cluster) savePids() error {
	var b strings.Builder
	for _, name := range c.state.Order {
		if pid, ok := c.pids[name]; ok {
			fmt.Fprintf(&b, "%s %d\n", name, pid)
		}
	}
	tmp := c.path("pids.tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, c.path("pids"))
}

// start launches name in a session of its own (it outlives the command
// that started it), output appended to DIR/logs/NAME.log, and waits until
// it is ready.
func (c *cluster) start(name string, readyWithin time.Duration) error {
	return c.startAll([]string{name}, readyWithin)
}

// startAll launches every name at once, then waits until each is ready:
// workers started together get an even chance at the poll activities.
func (c *cluster) startAll(names []string, readyWithin time.Duration) error {
	exited := map[string]chan error{}
	for _, name := range names {
		ch, err := c.launch(name)
		if err != nil {
			return err
		}
		exited[name] = ch
	}
	for _, name := range names {
		if err := waitReady(c.state.Specs[name].Ready, readyWithin, exited[name]); err != nil {
			return fmt.Errorf("rehearsal: %s (pid %d) not ready: %w; see %s", name, c.pids[name], err, c.path("logs/"+name+".log"))
		}
	}
	return nil
}

func (c *cluster) launch(name string) (chan error, error) {
	sp, ok := c.state.Specs[name]
	if !ok {
		return nil, fmt.Errorf("rehearsal: no process %q", name)
	}
	for _, addr := range sp.Ports {
		if listening(addr) {
			return nil, fmt.Errorf("rehearsal: %s: %s is already in use (another rehearsal, or a process left over? `scripts/rehearsal.sh down`)", name, addr)
		}
	}
	if err := os.MkdirAll(c.path("logs"), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(c.path("logs/"+name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "---- %s started by rehearsal\n", time.Now().UTC().Format(time.RFC3339))
	cmd := exec.Command(sp.Path, sp.Args...)
	cmd.Env, cmd.Dir = sp.Env, sp.Dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("rehearsal: start %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	c.children[pid] = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	c.pids[name] = pid
	return exited, c.savePids()
}

// stop sends sig to name and waits up to grace for it to exit, then
// SIGKILLs it. A process already gone is not an error.
func (c *cluster) stop(name string, sig syscall.Signal, grace time.Duration) error {
	pid, ok := c.pids[name]
	if !ok || !alive(pid) {
		delete(c.pids, name)
		return c.savePids()
	}
	_ = syscall.Kill(pid, sig)
	deadline := time.Now().Add(grace)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; alive(pid) && i < 200; i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if alive(pid) {
		return fmt.Errorf("rehearsal: %s (pid %d) does not die", name, pid)
	}
	delete(c.pids, name)
	delete(c.children, pid)
	// Its listening sockets close with it; wait until the kernel says so,
	// so a restart can bind them again.
	for _, addr := range c.state.Specs[name].Ports {
		for i := 0; listening(addr) && i < 100; i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c.savePids()
}

// stopTogether sends sig to every name at once, then stops each as stop
// does: a worker's stop waits out its long poll (up to 30 s), and one
// after the other three workers took a minute and a half.
func (c *cluster) stopTogether(names []string, sig syscall.Signal, grace time.Duration) error {
	for _, name := range names {
		if pid, ok := c.pids[name]; ok && alive(pid) {
			_ = syscall.Kill(pid, sig)
		}
	}
	for _, name := range names {
		if err := c.stop(name, sig, grace); err != nil {
			return err
		}
	}
	return nil
}

// alive reports whether pid runs. A zombie (dead, not yet reaped by a
// parent that is not us) counts as dead.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Field 3, after the parenthesised command name.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z' && s[i+2] != 'X'
	}
	return true
}

func listening(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

func waitReady(ready string, within time.Duration, exited <-chan error) error {
	deadline := time.Now().Add(within)
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("exited: %v", err)
		default:
		}
		var err error
		switch {
		case ready == "":
			return nil
		case strings.HasPrefix(ready, "tcp:"):
			if !listening(strings.TrimPrefix(ready, "tcp:")) {
				err = errors.New("not listening on " + strings.TrimPrefix(ready, "tcp:"))
			}
		default:
			var resp *http.Response
			if resp, err = hc.Get(ready); err == nil {
				resp.Body.Close()
				if resp.StatusCode/100 != 2 {
					err = fmt.Errorf("%s answered %s", ready, resp.Status)
				}
			}
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// workerNames are the worker processes, in order.
func (c *cluster) workerNames() []string {
	var out []string
	for name := range c.state.Specs {
		if strings.HasPrefix(name, "worker-") {
			out = append(out, name)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, _ := strconv.Atoi(strings.TrimPrefix(out[i], "worker-"))
		b, _ := strconv.Atoi(strings.TrimPrefix(out[j], "worker-"))
		return a < b
	})
	return out
}
