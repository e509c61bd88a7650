//go:build !nodev

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"

	"github.com/syncbridge/syncbridge/internal/contract"
	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/syncevent"
	"github.com/syncbridge/syncbridge/internal/testwait"
)

// A record of the demo batch whose body the UI can show as JSON, and the
// patient ID in it.
func readableRecord(t *testing.T, n int, seed int64) (key, patientID string) {
	t.Helper()
	for _, m := range demoBatch(n, seed) {
		if m.Key == "" || m.Kind != syncevent.KindNew {
			continue
		}
		var compact bytes.Buffer
		if json.Compact(&compact, m.Body) != nil || !bytes.Equal(compact.Bytes(), m.Body) || bytes.ContainsAny(m.Body, "<>&") {
			continue
		}
		var b struct {
			PatientData struct {
				PatientID json.RawMessage `json:"patientId"`
			} `json:"patientData"`
		}
		if json.Unmarshal(m.Body, &b) != nil || len(b.PatientData.PatientID) < 6 {
			continue
		}
		return m.Key, strings.Trim(string(b.PatientData.PatientID), `"`)
	}
	t.Fatal("the demo batch has no compact, valid record")
	return "", ""
}

var exportRE = regexp.MustCompile(`export SYNCBRIDGE_CODEC_TOKEN=(\S+)`)

// The dev stack stores ciphertext and the Web UI shows the record
// decoded through the codec endpoint; with -dev-ui-codec=false the same
// page shows no patient data. The codec endpoint refuses a caller without
// the token (401) and grants no CORS to a foreign origin.
func TestWebUIDecodesThroughCodec(t *testing.T) {
	for _, viaCodec := range []bool{true, false} {
		name := "with codec"
		if !viaCodec {
			name = "without codec"
		}
		t.Run(name, func(t *testing.T) {
			a := newAddrs(t)
			args := []string{"-dev-seed", "24", "-dev-seed-rng", "5"}
			if !viaCodec {
				args = append(args, "-dev-ui-codec=false")
			}
			p := startDev(t, a, nil, args...)
			banner := <-p.bannerText
			if !strings.Contains(banner, "encrypted (AES-256-GCM)") || !strings.Contains(banner, "http://"+a.codec) {
				t.Fatalf("banner does not say payloads are encrypted and where the codec is:\n%s", banner)
			}
			c, err := client.Dial(client.Options{HostPort: a.temporal}) // no codec: the raw view
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			testwait.Until(t, 3*time.Minute, "demo batch drained", func() bool {
				st := emulatorStats(t, a.mq)
				return st.Published == 24 && st.Acked == 24 && runningRecords(t, c) == 0
			})
			key, pid := readableRecord(t, 24, 5)
			d, err := c.DescribeWorkflowExecution(context.Background(), key, "")
			if err != nil {
				t.Fatal(err)
			}
			run := d.GetWorkflowExecutionInfo().GetExecution().GetRunId()
			// The event carrying the delivery shows the decoded body on its
			// page: the start event of a lean record (the delivery is its
			// input), a delivery signal of an older one.
			var signalID int64
			it := c.GetWorkflowHistory(context.Background(), key, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
			for it.HasNext() && signalID == 0 {
				ev, err := it.Next()
				if err != nil {
					t.Fatal(err)
				}
				started := ev.GetWorkflowExecutionStartedEventAttributes()
				if ev.GetEventType() == enumspb.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED ||
					(started != nil && started.GetWorkflowType().GetName() == contract.RecordWorkflowV2Name) {
					signalID = ev.GetEventId()
				}
			}
			if signalID == 0 {
				t.Fatalf("%s has no event carrying its delivery", key)
			}

			if viaCodec {
				codecRefusals(t, a, banner, p.logPath)
			}

			page := fmt.Sprintf("http://%s/namespaces/default/workflows/%s/%s/history/events/%d", a.ui, key, run, signalID)
			want := []string{key}
			if viaCodec {
				want = append(want, pid, "patientData")
			} else {
				want = append(want, "!"+pid, "!patientData")
			}
			out := filepath.Join(t.TempDir(), "record.png")
			if s := os.Getenv("UI_CHECK_SCREENSHOT"); s != "" {
				out = strings.TrimSuffix(s, ".png") + "-" + strings.ReplaceAll(name, " ", "-") + ".png"
			}
			cmd := exec.Command(filepath.Join("..", "scripts", "ui-check.sh"), append([]string{page, out}, want...)...)
			b, err := cmd.CombinedOutput()
			t.Logf("ui-check.sh:\n%s", b)
			if strings.HasPrefix(string(b), "SKIP") {
				t.Skip(strings.TrimSpace(string(b)))
			}
			if err != nil {
				t.Fatalf("Web UI check failed: %v", err)
			}
			p.stop(t)
			if viaCodec {
				// The page's decodes are on the trail, as the UI's origin,
				// and the patient they showed is not.
				b, err := os.ReadFile(p.logPath)
				if err != nil {
					t.Fatal(err)
				}
				log := string(b)
				n := 0
				for _, l := range strings.Split(log, "\n") {
					if strings.Contains(l, `msg="codec audit"`) && strings.Contains(l, "who=ui-origin") && strings.Contains(l, "outcome=ok") && !strings.Contains(l, "payloads=0") {
						n++
					}
				}
				if n == 0 {
					t.Error("no audit line of the UI's decodes")
				}
				if strings.Contains(log, pid) {
					t.Errorf("patient %s in the worker's log", pid)
				}
			}
		})
	}
}

func codecRefusals(t *testing.T, a devAddrs, banner, logPath string) {
	t.Helper()
	m := exportRE.FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("banner exports no codec token:\n%s", banner)
	}
	token := strings.Trim(m[1], "'")
	post := func(hdr map[string]string) *http.Response {
		req, _ := http.NewRequest(http.MethodPost, "http://"+a.codec+"/default/decode", strings.NewReader(`{"payloads":[]}`))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := post(nil); r.StatusCode != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", r.StatusCode)
	}
	if r := post(map[string]string{"Origin": "https://evil.example"}); r.StatusCode != http.StatusUnauthorized || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign origin: %d, CORS %q", r.StatusCode, r.Header.Get("Access-Control-Allow-Origin"))
	}
	if r := post(map[string]string{"Origin": "https://evil.example", "Authorization": "Bearer " + token}); r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("foreign origin with a token was granted CORS")
	}
	if r := post(map[string]string{"Authorization": "Bearer " + token}); r.StatusCode != http.StatusOK {
		t.Errorf("with the token: %d", r.StatusCode)
	}
	if r := post(map[string]string{"Origin": "http://" + a.ui}); r.StatusCode != http.StatusOK || r.Header.Get("Access-Control-Allow-Origin") != "http://"+a.ui {
		t.Errorf("the UI's origin: %d, CORS %q", r.StatusCode, r.Header.Get("Access-Control-Allow-Origin"))
	}
	// Five calls, five audit lines in the worker's log (its level is
	// info in dev; the trail does not depend on it), the token by its name.
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	var audits []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.Contains(l, `msg="codec audit"`) && strings.Contains(l, "op=decode") {
			audits = append(audits, l)
		}
	}
	if len(audits) != 5 {
		t.Fatalf("%d audit lines for 5 decode calls:\n%s", len(audits), strings.Join(audits, "\n"))
	}
	for i, want := range []string{"outcome=denied", "outcome=denied", "who=token:unnamed-", "who=token:unnamed-", "who=ui-origin"} {
		if !strings.Contains(audits[i], want) || strings.Contains(audits[i], token) {
			t.Errorf("audit line %d lacks %q or carries the token: %s", i, want, audits[i])
		}
	}
}
