// Package tcpproxy is a loopback TCP proxy that tests put between a client
// and a server to simulate an outage (Cut drops every live connection and
// refuses new ones until Restore) or a slow network (SetLatency delays
// every request). It exists for failure tests only.
package tcpproxy

import (
	"errors"
	"net"
	"sync"
	"time"
)

// Proxy forwards connections from Addr() to a target address.
type Proxy struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	cut      bool
	latency  time.Duration
	conns    map[net.Conn]struct{}
	clients  int // client connections open now
	maxConns int // the most open at once
	wg       sync.WaitGroup
}

// SetLatency delays every chunk a client sends by d before it reaches the
// server (a request-reply protocol then pays d per round trip); 0 removes
// the delay.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

// Conns reports the client connections open now and the most that were
// open at once since Start.
func (p *Proxy) Conns() (open, most int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clients, p.maxConns
}

// Start listens on 127.0.0.1 at a free port and forwards to target.
func Start(target string) (*Proxy, error) { return Listen("127.0.0.1:0", target) }

// Listen is Start on a given address, for a proxy that must keep its port
// across runs (the production rehearsal's database cut).
func Listen(addr, target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's listen address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Cut closes every open connection and refuses new ones.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		c.Close()
	}
}

// Restore accepts connections again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.cut = false
	p.mu.Unlock()
}

// Close stops the proxy and closes all connections.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.Cut()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.mu.Unlock()
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.cut {
			p.mu.Unlock()
			c.Close()
			up.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.conns[up] = struct{}{}
		p.clients++
		p.maxConns = max(p.maxConns, p.clients)
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			p.pipe(up, c, true)
			p.mu.Lock()
			p.clients--
			p.mu.Unlock()
		}()
		go p.pipe(c, up, false)
	}
}

// pipe copies src to dst; requests (client to server) wait out the latency.
func (p *Proxy) pipe(dst, src net.Conn, requests bool) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if requests {
				p.mu.Lock()
				d := p.latency
				p.mu.Unlock()
				if d > 0 {
					time.Sleep(d)
				}
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
}
