package devstack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	uiserver "github.com/temporalio/ui-server/v2/server"
	uiconfig "github.com/temporalio/ui-server/v2/server/config"
	uioptions "github.com/temporalio/ui-server/v2/server/server_options"
)

// webUI is the Temporal Web UI (the ui-server module with its embedded
// assets) proxying its /api/v1 calls to the frontend over gRPC.
type webUI struct {
	srv  *uiserver.Server
	url  string
	done chan struct{}
}

// startWebUI serves the UI on held's address and returns once its health
// endpoint answers. The UI server binds inside its blocking Start and exits
// the process if that fails, and it cannot take a listener, so held is
// closed only just before that bind: the window in which something else can
// take the port is the few instructions between the two.
func startWebUI(ctx context.Context, held net.Listener, frontend, namespace, codecEndpoint string) (*webUI, error) {
	addr := held.Addr().String()
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("devstack: web UI address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("devstack: web UI port %q: %w", portStr, err)
	}
	srv := uiserver.NewServer(uioptions.WithConfigProvider(&uiconfig.Config{
		Host:                host,
		Port:                port,
		TemporalGRPCAddress: frontend,
		EnableUI:            true,
		DefaultNamespace:    namespace,
		// Plain http on loopback: a Secure cookie would never come back.
		CORS:     uiconfig.CORS{CookieInsecure: true},
		HideLogs: true,
		// The dev stack must work offline; the news feed is a remote fetch.
		DisableNewsFetch: true,
		// Payloads are encrypted; the browser decodes them through the
		// codec endpoint, which grants CORS to this UI's origin only.
		Codec: uiconfig.Codec{Endpoint: codecEndpoint},
	}))
	ui := &webUI{srv: srv, url: "http://" + addr, done: make(chan struct{})}
	if err := held.Close(); err != nil {
		return nil, fmt.Errorf("devstack: release web UI port %s: %w", addr, err)
	}
	go func() {
		defer close(ui.done)
		_ = srv.Start() // returns nil once Stop closes it; bind failures exit inside
	}()
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := waitHTTP(waitCtx, ui.url+"/healthz"); err != nil {
		_ = ui.stop() // the start failure is the error to report
		return nil, fmt.Errorf("devstack: web UI on %s did not come up: %w", addr, err)
	}
	return ui, nil
}

func (u *webUI) stop() error {
	u.srv.Stop()
	select {
	case <-u.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("devstack: web UI on %s did not stop within 10s", u.url)
	}
}

// waitHTTP polls url until it answers 200 or ctx ends.
func waitHTTP(ctx context.Context, url string) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%v: %w", err, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
