package testenv

import "testing"

// TestWorkerVarsPayloadKey: the Env's key travels with its ID; a test's
// own key drops that ID (it would name the wrong key) unless the test
// gives one; a plaintext Env says so.
func TestWorkerVarsPayloadKey(t *testing.T) {
	e := &Env{PayloadKey: "env-key", PayloadKeyID: "env-id", TaskQueue: "q"}
	v := e.WorkerVars("q/", nil)
	if v["SYNCBRIDGE_PAYLOAD_KEY"] != "env-key" || v["SYNCBRIDGE_PAYLOAD_KEY_ID"] != "env-id" || v["SYNCBRIDGE_WORKFLOW_ID_PREFIX"] != "q/" {
		t.Errorf("default: %v", v)
	}
	v = e.WorkerVars("q/", map[string]string{"SYNCBRIDGE_PAYLOAD_KEY": "own"})
	if _, ok := v["SYNCBRIDGE_PAYLOAD_KEY_ID"]; ok || v["SYNCBRIDGE_PAYLOAD_KEY"] != "own" {
		t.Errorf("own key: %v", v)
	}
	v = e.WorkerVars("q/", map[string]string{"SYNCBRIDGE_PAYLOAD_KEY": "own", "SYNCBRIDGE_PAYLOAD_KEY_ID": "own-id"})
	if v["SYNCBRIDGE_PAYLOAD_KEY_ID"] != "own-id" {
		t.Errorf("own key and ID: %v", v)
	}
	plain := &Env{}
	if v := plain.WorkerVars("", nil); v["SYNCBRIDGE_PAYLOAD_PLAINTEXT"] != "true" || v["SYNCBRIDGE_PAYLOAD_KEY"] != "" {
		t.Errorf("plaintext: %v", v)
	}
}
