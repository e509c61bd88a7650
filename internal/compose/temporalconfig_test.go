package compose

import (
	"path/filepath"
	"testing"

	serverconfig "go.temporal.io/server/common/config"
)

// deploy/temporal/config.yaml, rendered by the server's own loader with
// the temporal service's environment, describes the cluster the rehearsal
// drills: PostgreSQL for persistence and visibility, 4 shards, membership
// ports below 32768, the mounted dynamic config, a frontend the other
// containers reach.
func TestTemporalConfigRendersForCompose(t *testing.T) {
	tmp := variants(t)["defaults"].Services["temporal"]
	for k, v := range tmp.Environment {
		t.Setenv(k, v)
	}
	cfg, err := serverconfig.Load(serverconfig.WithConfigFile(filepath.Join(repo, "deploy", "temporal", "config.yaml")))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Persistence
	if p.NumHistoryShards < 4 {
		t.Errorf("%d history shards, want 4 or more", p.NumHistoryShards)
	}
	for role, store := range map[string]string{"persistence": p.DefaultStore, "visibility": p.VisibilityStore} {
		ds, ok := p.DataStores[store]
		if !ok || ds.SQL == nil {
			t.Fatalf("%s store %q is not an SQL store", role, store)
		}
		if ds.SQL.PluginName != "postgres12" || ds.SQL.ConnectAddr != "postgresql:5432" {
			t.Errorf("%s: %s on %s, want postgres12 on postgresql:5432", role, ds.SQL.PluginName, ds.SQL.ConnectAddr)
		}
		if ds.SQL.Password != tmp.Environment["POSTGRES_PWD"] || ds.SQL.Password == "" {
			t.Errorf("%s: the password is not POSTGRES_PWD", role)
		}
	}
	if got, want := p.DataStores[p.VisibilityStore].SQL.DatabaseName, tmp.Environment["VISIBILITY_DB"]; got != want {
		t.Errorf("visibility database %q, want %q", got, want)
	}
	for name, svc := range cfg.Services {
		if svc.RPC.MembershipPort <= 0 || svc.RPC.MembershipPort >= 32768 {
			t.Errorf("%s: membership port %d, must be below 32768 on PostgreSQL", name, svc.RPC.MembershipPort)
		}
	}
	if fe := cfg.Services["frontend"].RPC; fe.GRPCPort != 7233 || fe.BindOnIP != "0.0.0.0" {
		t.Errorf("frontend on %s:%d, want 0.0.0.0:7233", fe.BindOnIP, fe.GRPCPort)
	}
	if got := cfg.DynamicConfigClient.Filepath; got != tmp.Environment["DYNAMIC_CONFIG_FILE_PATH"] {
		t.Errorf("dynamic config from %s", got)
	}
}
