package config

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// TemporalTLS secures the connection to the Temporal frontend. Temporal
// Cloud requires TLS with either a client certificate (mTLS) or an API key
// (Temporal.APIKey); a self-hosted cluster may use either or none.
type TemporalTLS struct {
	// Enabled is true when TEMPORAL_TLS=true, or when it is "auto" (the
	// default) and any of the files, the server name or an API key is set.
	Enabled bool
	// CertFile and KeyFile are the PEM client certificate and key for mTLS;
	// both or neither. They are read again at every TLS handshake, so a
	// rotated certificate is used from the next reconnect on.
	CertFile, KeyFile string
	// CAFile is a PEM bundle trusted for the server certificate instead of
	// the system roots; "" = system roots (right for Temporal Cloud).
	CAFile string
	// ServerName overrides the name the server certificate is verified
	// against (and sent as SNI); "" = the host of TEMPORAL_ADDRESS.
	ServerName string
}

// DB TLS modes accepted in POLARDB_TLS. They are go-sql-driver's own
// names, so a DSN written by hand means the same thing.
const (
	DBTLSOff        = "false"
	DBTLSVerify     = "true"
	DBTLSSkipVerify = "skip-verify"
	DBTLSPreferred  = "preferred"
)

// temporalTLS reads the TEMPORAL_TLS* variables. Files are opened and
// parsed now so that a wrong path or a mismatched pair stops the worker at
// start, naming the variable, instead of failing at the first handshake.
func (l *loader) temporalTLS(apiKeySet bool) TemporalTLS {
	t := TemporalTLS{
		CertFile:   l.str("TEMPORAL_TLS_CERT"),
		KeyFile:    l.str("TEMPORAL_TLS_KEY"),
		CAFile:     l.str("TEMPORAL_TLS_CA"),
		ServerName: l.str("TEMPORAL_TLS_SERVER_NAME"),
	}
	anySet := t.CertFile != "" || t.KeyFile != "" || t.CAFile != "" || t.ServerName != ""
	switch mode := strings.ToLower(l.str("TEMPORAL_TLS")); mode {
	case "auto":
		t.Enabled = anySet || apiKeySet
	case "true", "1":
		t.Enabled = true
	case "false", "0":
		if anySet {
			l.fail("TEMPORAL_TLS", "is false but TEMPORAL_TLS_CERT/KEY/CA/SERVER_NAME are set; remove them or enable TLS")
		}
	default:
		l.fail("TEMPORAL_TLS", fmt.Sprintf("must be auto, true or false, got %q", mode))
	}

	switch {
	case (t.CertFile == "") != (t.KeyFile == ""):
		l.fail("TEMPORAL_TLS_CERT", "and TEMPORAL_TLS_KEY must be set together (client certificate and its key)")
	case t.CertFile != "":
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			// The error names files and PEM problems, never key material.
			l.fail("TEMPORAL_TLS_CERT", "and TEMPORAL_TLS_KEY are not a usable certificate/key pair: "+err.Error())
		}
	}
	if t.CAFile != "" {
		if _, _, err := readCertPool(t.CAFile); err != nil {
			l.fail("TEMPORAL_TLS_CA", err.Error())
		}
	}
	return t
}

// dbTLS applies POLARDB_TLS to dsn and returns the DSN to use. A CA file or
// server name needs a *tls.Config, which go-sql-driver only takes through
// its process-wide registry; it is registered under a name derived from
// its contents, so loading the same configuration twice (or two different
// ones in one process, as tests do) never clobbers another.
func (l *loader) dbTLS(dsn string, dsnGiven bool) string {
	raw := strings.TrimSpace(l.getenv("POLARDB_TLS"))
	mode := strings.ToLower(l.str("POLARDB_TLS"))
	caFile := l.str("POLARDB_TLS_CA")
	serverName := l.str("POLARDB_TLS_SERVER_NAME")

	switch mode {
	case DBTLSOff, DBTLSVerify, DBTLSSkipVerify, DBTLSPreferred:
	default:
		l.fail("POLARDB_TLS", fmt.Sprintf("must be false, true, skip-verify or preferred, got %q", mode))
		return dsn
	}
	if (caFile != "" || serverName != "") && mode != DBTLSVerify {
		l.fail("POLARDB_TLS_CA", "and POLARDB_TLS_SERVER_NAME need POLARDB_TLS=true (a CA is only used to verify the server)")
		return dsn
	}
	if dsn == "" {
		return dsn // already reported
	}
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return dsn // already reported; the message would quote the password
	}
	if dsnGiven && raw != "" && mc.TLSConfig != "" {
		l.fail("POLARDB_TLS", "is set and POLARDB_DSN has its own tls parameter; set TLS in one place")
		return dsn
	}
	if mode == DBTLSOff {
		return dsn
	}
	if caFile == "" && serverName == "" {
		mc.TLSConfig = mode
		return mc.FormatDSN()
	}

	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	fingerprint := sha256.New()
	fmt.Fprintf(fingerprint, "%s\x00", serverName)
	if caFile != "" {
		pool, pem, err := readCertPool(caFile)
		if err != nil {
			l.fail("POLARDB_TLS_CA", err.Error())
			return dsn
		}
		tc.RootCAs = pool
		fingerprint.Write(pem)
	}
	name := "syncbridge-" + hex.EncodeToString(fingerprint.Sum(nil)[:8])
	if err := mysql.RegisterTLSConfig(name, tc); err != nil {
		l.fail("POLARDB_TLS", "cannot register the TLS configuration: "+err.Error())
		return dsn
	}
	mc.TLSConfig = name
	return mc.FormatDSN()
}

// readCertPool reads a PEM bundle of trusted certificates.
func readCertPool(path string) (*x509.CertPool, []byte, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot be read: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, pem, nil
}

// LoadCertPool reads a PEM bundle of trusted certificates, for callers
// building a TLS configuration from a validated Config.
func LoadCertPool(path string) (*x509.CertPool, error) {
	pool, _, err := readCertPool(path)
	if err != nil {
		return nil, fmt.Errorf("CA file %s: %w", path, err)
	}
	return pool, nil
}

// transportSafety refuses plaintext links that would carry patient data or
// credentials across a network: an http:// broker endpoint (message bodies,
// signed requests), a database without enforced TLS (rows, password), an
// API key over plaintext gRPC. Loopback is exempt (the dev stack, a local
// tunnel or sidecar); anything else needs its explicit override, so the
// insecure choice is written down in the deployment, not a default.
func (l *loader) transportSafety(c Config) {
	if u, err := url.Parse(c.MQ.Endpoint); err == nil && u.Scheme == "http" && !isLoopback(u.Hostname()) && !l.boolean("ROCKETMQ_ALLOW_HTTP") {
		l.fail("ROCKETMQ_ENDPOINT", "is http:// to a non-loopback host: message bodies and signed requests would cross the network in plaintext; use the https:// endpoint, or set ROCKETMQ_ALLOW_HTTP=true to accept it")
	}
	if mc, err := mysql.ParseDSN(c.DB.DSN); err == nil && mc.Net == "tcp" {
		host, _, err := net.SplitHostPort(mc.Addr)
		if err != nil {
			host = mc.Addr
		}
		weak := mc.TLSConfig == "" || mc.TLSConfig == DBTLSOff || mc.TLSConfig == DBTLSPreferred || mc.AllowFallbackToPlaintext
		if weak && !isLoopback(host) && !l.boolean("POLARDB_ALLOW_PLAINTEXT") {
			l.fail("POLARDB_TLS", "is false or preferred for a non-loopback database: rows and the password could travel in plaintext "+
				"(preferred falls back silently); use POLARDB_TLS=true or skip-verify, or set POLARDB_ALLOW_PLAINTEXT=true to accept it")
		}
	}
	if c.Temporal.APIKey != "" && !c.Temporal.TLS.Enabled {
		host, _, err := net.SplitHostPort(c.Temporal.Address)
		if err != nil {
			host = c.Temporal.Address
		}
		if !isLoopback(host) && !l.boolean("TEMPORAL_ALLOW_PLAINTEXT_API_KEY") {
			l.fail("TEMPORAL_TLS", "is false with TEMPORAL_API_KEY set for a non-loopback frontend: the key would be sent in plaintext; "+
				"enable TLS, or set TEMPORAL_ALLOW_PLAINTEXT_API_KEY=true to accept it")
		}
	}
}

// isLoopback is true for localhost and loopback IPs. Names are not
// resolved: what a name points to can change after the check.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
