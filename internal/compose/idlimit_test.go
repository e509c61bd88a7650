package compose

import (
	"os"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The worker must know the ID limit the stack's Temporal enforces, or a
// key between the two limits is refused by Temporal on every redelivery
// instead of being quarantined as key_too_long.
func TestWorkerKnowsTemporalIDLimit(t *testing.T) {
	f, err := Load("../../docker-compose.yml", func(string) (string, bool) { return "", false })
	if err != nil {
		t.Fatal(err)
	}
	got := f.Services["worker"].Environment["SYNCBRIDGE_MAX_WORKFLOW_ID_BYTES"]
	b, err := os.ReadFile("../../deploy/temporal/dynamicconfig/syncbridge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var dc map[string][]struct {
		Value any `yaml:"value"`
	}
	if err := yaml.Unmarshal(b, &dc); err != nil {
		t.Fatal(err)
	}
	vals := dc["limit.maxIDLength"]
	if len(vals) != 1 {
		t.Fatalf("dynamic config has %d limit.maxIDLength values, want 1", len(vals))
	}
	if want := yamlScalar(vals[0].Value); got != want {
		t.Fatalf("worker SYNCBRIDGE_MAX_WORKFLOW_ID_BYTES = %q, Temporal's limit.maxIDLength = %s", got, want)
	}
}

func yamlScalar(v any) string {
	b, _ := yaml.Marshal(v)
	return string(b[:len(b)-1])
}
