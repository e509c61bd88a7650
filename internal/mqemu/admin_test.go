package mqemu

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// The admin endpoints refuse what a web page could send: a form-style
// POST (text/plain), a foreign Host (DNS rebinding), a cross-site Origin.
// Loopback tools and AdminHosts keep working.
func TestAdminRefusesCrossSite(t *testing.T) {
	t.Parallel()
	h := newHarness(t, Config{AdminHosts: []string{"mqemu"}})
	faultsURL := h.srv.URL + "/_emulator/faults"
	do := func(method, url, host, ctype, origin, body string) int {
		t.Helper()
		req, err := http.NewRequest(method, url, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if host != "" {
			req.Host = host
		}
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	refused := []struct {
		name                              string
		method, host, ctype, origin, body string
	}{
		{"form POST text/plain", http.MethodPost, "", "text/plain", "", "dup=0.9"},
		{"form POST urlencoded", http.MethodPost, "", "application/x-www-form-urlencoded", "", "dup=0.9"},
		{"POST without type", http.MethodPost, "", "", "", `{"faults":"dup=0.9"}`},
		{"rebound Host", http.MethodPut, "evil.example:9876", "", "", "dup=0.9"},
		{"rebound Host, JSON", http.MethodPost, "evil.example", "application/json", "", `{"faults":"dup=0.9"}`},
		{"cross-site Origin", http.MethodPost, "", "application/json", "http://evil.example", `{"faults":"dup=0.9"}`},
	}
	for _, tc := range refused {
		if code := do(tc.method, faultsURL, tc.host, tc.ctype, tc.origin, tc.body); code < 400 {
			t.Errorf("%s: answered %d", tc.name, code)
		}
		if f := h.emu.Faults(); f.DuplicateRate != 0 {
			t.Fatalf("%s: faults changed to %s", tc.name, f)
		}
	}
	if code := do(http.MethodGet, h.srv.URL+"/_emulator/deadletters?topic=T&group=G", "evil.example", "", "", ""); code != http.StatusForbidden {
		t.Errorf("GET with a foreign Host: %d, want 403", code)
	}

	if code := do(http.MethodPut, faultsURL, "", "text/plain", "", "dup=0.25"); code != http.StatusOK || h.emu.Faults().DuplicateRate != 0.25 {
		t.Errorf("loopback PUT: %d, faults %s", code, h.emu.Faults())
	}
	if code := do(http.MethodPost, faultsURL, "localhost:1", "application/json; charset=utf-8", "", `{"faults":"dup=0.5"}`); code != http.StatusOK || h.emu.Faults().DuplicateRate != 0.5 {
		t.Errorf("JSON POST via localhost: %d, faults %s", code, h.emu.Faults())
	}
	if code := do(http.MethodGet, h.srv.URL+"/_emulator/stats", "mqemu:9876", "", "", ""); code != http.StatusOK {
		t.Errorf("GET with a configured AdminHost: %d", code)
	}
	if code := do(http.MethodGet, h.srv.URL+"/_emulator/stats", "[::1]:9876", "", "", ""); code != http.StatusOK {
		t.Errorf("GET with Host [::1]: %d", code)
	}
}
