package testenv

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
)

// FreeAddr is a loopback address that was free a moment ago, for a process
// under test to listen on. Its port lies below the kernel's ephemeral range:
// a port taken from ":0" is in that range, so between the check and the bind
// any outgoing connection on the machine can be given it, which a parallel
// CI run, with thousands of connections a second, does now and then.
func FreeAddr(t testing.TB) string {
	t.Helper()
	const lowest = 10000
	top := ephemeralLow()
	for range 200 {
		port := lowest + rand.IntN(top-lowest)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // in use, or just released; try another
		}
		addr := ln.Addr().String()
		if err := ln.Close(); err != nil {
			t.Fatalf("testenv: release %s: %v", addr, err)
		}
		return addr
	}
	t.Fatalf("testenv: no free port in [%d, %d) after 200 tries", lowest, top)
	return ""
}

// ephemeralLow is the first port of Linux's ephemeral range, 32768 (its
// default) when it cannot be read or makes no room below it.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 32768
	}
	n, err := strconv.Atoi(f[0])
	if err != nil || n <= 11000 {
		return 32768
	}
	return n
}
