package workerapp

import (
	"crypto/tls"
	"fmt"

	"go.temporal.io/sdk/client"

	"github.com/syncbridge/syncbridge/internal/config"
)

// applyTemporalSecurity sets TLS and API-key authentication on o from the
// validated configuration. The database needs nothing here: config.Load
// already put its TLS settings into the DSN.
func applyTemporalSecurity(o *client.Options, t config.Temporal) error {
	if t.TLS.Enabled {
		tc, err := temporalTLSConfig(t.TLS)
		if err != nil {
			return err
		}
		o.ConnectionOptions.TLS = tc
	} else {
		// The SDK turns TLS on by itself when an API key is given; an
		// operator who said TEMPORAL_TLS=false (a local sidecar terminating
		// TLS) must get what they asked for.
		o.ConnectionOptions.TLSDisabled = true
	}
	if t.APIKey != "" {
		o.Credentials = client.NewAPIKeyStaticCredentials(t.APIKey)
	}
	return nil
}

// temporalTLSConfig builds the client side of the frontend connection.
func temporalTLSConfig(t config.TemporalTLS) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		pool, err := config.LoadCertPool(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("TEMPORAL_TLS_CA: %w", err)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		certFile, keyFile := t.CertFile, t.KeyFile
		// Read at each handshake rather than once: client certificates for
		// Temporal Cloud are short-lived and rotated in place by the
		// platform (mounted secret), and a reconnect should pick up the
		// new pair without a restart.
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("load Temporal client certificate (TEMPORAL_TLS_CERT/KEY): %w", err)
			}
			return &cert, nil
		}
	}
	return tc, nil
}
