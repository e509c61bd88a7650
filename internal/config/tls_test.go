package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// pemFiles writes a fresh self-signed certificate and its key to dir and
// returns their paths.
func pemFiles(t *testing.T, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(dir, name+".crt")
	keyFile = filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

func with(m map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

func mustFail(t *testing.T, m map[string]string, names ...string) {
	t.Helper()
	_, err := Load(env(m))
	if err == nil {
		t.Fatalf("accepted: %v", m)
	}
	for _, n := range names {
		if !strings.Contains(err.Error(), n) {
			t.Fatalf("error does not name %s: %v", n, err)
		}
	}
}

func TestTemporalTLSAutoMode(t *testing.T) {
	dir := t.TempDir()
	ca, _ := pemFiles(t, dir, "ca")
	cases := []struct {
		name    string
		env     map[string]string
		enabled bool
	}{
		{"nothing set", valid(), false},
		{"api key turns TLS on", with(valid(), "TEMPORAL_API_KEY", "k"), true},
		{"CA turns TLS on", with(valid(), "TEMPORAL_TLS_CA", ca), true},
		{"server name turns TLS on", with(valid(), "TEMPORAL_TLS_SERVER_NAME", "ns.acct.tmprl.cloud"), true},
		{"forced on with system roots", with(valid(), "TEMPORAL_TLS", "true"), true},
		{"forced off keeps the api key", with(valid(), "TEMPORAL_TLS", "false", "TEMPORAL_API_KEY", "k"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := Load(env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if c.Temporal.TLS.Enabled != tc.enabled {
				t.Fatalf("TLS enabled = %t, want %t", c.Temporal.TLS.Enabled, tc.enabled)
			}
			if c.Temporal.APIKey != tc.env["TEMPORAL_API_KEY"] {
				t.Fatalf("api key %q not carried", tc.env["TEMPORAL_API_KEY"])
			}
		})
	}
}

func TestTemporalTLSFilesCheckedAtLoad(t *testing.T) {
	dir := t.TempDir()
	certA, keyA := pemFiles(t, dir, "a")
	_, keyB := pemFiles(t, dir, "b")
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}

	c, err := Load(env(with(valid(), "TEMPORAL_TLS_CERT", certA, "TEMPORAL_TLS_KEY", keyA, "TEMPORAL_TLS_CA", certA)))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Temporal.TLS.Enabled || c.Temporal.TLS.CertFile != certA || c.Temporal.TLS.KeyFile != keyA || c.Temporal.TLS.CAFile != certA {
		t.Fatalf("TLS settings not loaded: %+v", c.Temporal.TLS)
	}

	mustFail(t, with(valid(), "TEMPORAL_TLS_CERT", certA), "TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY")
	mustFail(t, with(valid(), "TEMPORAL_TLS_CERT", certA, "TEMPORAL_TLS_KEY", keyB), "TEMPORAL_TLS_CERT")
	mustFail(t, with(valid(), "TEMPORAL_TLS_CERT", certA, "TEMPORAL_TLS_KEY", filepath.Join(dir, "missing")), "TEMPORAL_TLS_CERT")
	mustFail(t, with(valid(), "TEMPORAL_TLS_CA", notPEM), "TEMPORAL_TLS_CA", "no PEM certificate")
	mustFail(t, with(valid(), "TEMPORAL_TLS_CA", filepath.Join(dir, "missing")), "TEMPORAL_TLS_CA")
	mustFail(t, with(valid(), "TEMPORAL_TLS", "false", "TEMPORAL_TLS_CA", certA), "TEMPORAL_TLS")
	mustFail(t, with(valid(), "TEMPORAL_TLS", "maybe"), "TEMPORAL_TLS")
}

func TestTemporalAPIKeySecret(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "apikey")
	if err := os.WriteFile(f, []byte("tmprl-very-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(env(with(valid(), "TEMPORAL_API_KEY_FILE", f)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Temporal.APIKey != "tmprl-very-secret" {
		t.Fatalf("api key from file: %q", c.Temporal.APIKey)
	}
	if strings.Contains(c.String(), "tmprl-very-secret") {
		t.Fatal("api key printed by String")
	}
	mustFail(t, with(valid(), "TEMPORAL_API_KEY_FILE", f, "TEMPORAL_API_KEY", "x"), "TEMPORAL_API_KEY")
}

func parsedDSN(t *testing.T, m map[string]string) *mysql.Config {
	t.Helper()
	c, err := Load(env(m))
	if err != nil {
		t.Fatal(err)
	}
	mc, err := mysql.ParseDSN(c.DB.DSN)
	if err != nil {
		t.Fatalf("loaded DSN does not parse: %v", err)
	}
	return mc
}

func TestDBTLSModes(t *testing.T) {
	if mc := parsedDSN(t, valid()); mc.TLS != nil || mc.TLSConfig != "" {
		t.Fatalf("TLS on by default: %q", mc.TLSConfig)
	}
	mc := parsedDSN(t, with(valid(), "POLARDB_TLS", "true"))
	if mc.TLS == nil || mc.TLS.InsecureSkipVerify || mc.TLS.ServerName != "db.internal" {
		t.Fatalf("true must verify against the endpoint's host: %+v", mc.TLS)
	}
	mc = parsedDSN(t, with(valid(), "POLARDB_TLS", "skip-verify"))
	if mc.TLS == nil || !mc.TLS.InsecureSkipVerify || mc.AllowFallbackToPlaintext {
		t.Fatalf("skip-verify: %+v", mc)
	}
	mc = parsedDSN(t, with(valid(), "POLARDB_TLS", "preferred"))
	if mc.TLS == nil || !mc.AllowFallbackToPlaintext {
		t.Fatalf("preferred: %+v", mc)
	}
	mustFail(t, with(valid(), "POLARDB_TLS", "yes-please"), "POLARDB_TLS")
}

func TestDBTLSWithCA(t *testing.T) {
	dir := t.TempDir()
	caA, _ := pemFiles(t, dir, "a")
	caB, _ := pemFiles(t, dir, "b")

	mcA := parsedDSN(t, with(valid(), "POLARDB_TLS", "true", "POLARDB_TLS_CA", caA))
	if mcA.TLS == nil || mcA.TLS.RootCAs == nil || mcA.TLS.InsecureSkipVerify {
		t.Fatalf("CA not applied: %+v", mcA.TLS)
	}
	if mcA.TLS.ServerName != "db.internal" {
		t.Fatalf("server name %q, want the endpoint's host", mcA.TLS.ServerName)
	}
	if !strings.HasPrefix(mcA.TLSConfig, "syncbridge-") {
		t.Fatalf("TLS config name %q", mcA.TLSConfig)
	}
	again := parsedDSN(t, with(valid(), "POLARDB_TLS", "true", "POLARDB_TLS_CA", caA))
	mcB := parsedDSN(t, with(valid(), "POLARDB_TLS", "true", "POLARDB_TLS_CA", caB))
	if again.TLSConfig != mcA.TLSConfig || mcB.TLSConfig == mcA.TLSConfig {
		t.Fatalf("names must follow the CA: %s %s %s", mcA.TLSConfig, again.TLSConfig, mcB.TLSConfig)
	}
	// The registered pool trusts exactly the file's certificate.
	if mcA.TLS.RootCAs.Equal(mcB.TLS.RootCAs) {
		t.Fatal("two CAs produced the same pool")
	}

	named := parsedDSN(t, with(valid(), "POLARDB_TLS", "true", "POLARDB_TLS_SERVER_NAME", "pc-x.rwlb.rds.aliyuncs.com"))
	if named.TLS.ServerName != "pc-x.rwlb.rds.aliyuncs.com" || named.TLS.RootCAs != nil {
		t.Fatalf("server name override: %+v", named.TLS)
	}

	// With a DSN given whole, TLS is applied to it too.
	m := with(valid(), "POLARDB_DSN", "u:p@tcp(10.0.0.1:3306)/records", "POLARDB_TLS", "true", "POLARDB_TLS_CA", caA)
	delete(m, "POLARDB_ENDPOINT")
	if mc := parsedDSN(t, m); mc.TLSConfig != mcA.TLSConfig || mc.TLS.ServerName != "10.0.0.1" || mc.Passwd != "p" {
		t.Fatalf("DSN with TLS: %s %+v", mc.TLSConfig, mc.TLS)
	}
}

func TestDBTLSConflicts(t *testing.T) {
	dir := t.TempDir()
	ca, _ := pemFiles(t, dir, "ca")
	mustFail(t, with(valid(), "POLARDB_TLS_CA", ca), "POLARDB_TLS_CA", "POLARDB_TLS=true")
	mustFail(t, with(valid(), "POLARDB_TLS", "skip-verify", "POLARDB_TLS_CA", ca), "POLARDB_TLS_CA")
	mustFail(t, with(valid(), "POLARDB_TLS", "true", "POLARDB_TLS_CA", filepath.Join(dir, "missing")), "POLARDB_TLS_CA")

	m := with(valid(), "POLARDB_DSN", "u:p@tcp(10.0.0.1:3306)/records?tls=skip-verify")
	delete(m, "POLARDB_ENDPOINT")
	if mc := parsedDSN(t, m); mc.TLSConfig != "skip-verify" {
		t.Fatalf("a DSN's own tls parameter must be kept: %q", mc.TLSConfig)
	}
	mustFail(t, with(m, "POLARDB_TLS", "true"), "POLARDB_TLS", "one place")
}
