package codecserver

import (
	"log/slog"

	"github.com/uber-go/tally/v4"

	"github.com/syncbridge/syncbridge/internal/codec"
	"github.com/syncbridge/syncbridge/internal/config"
)

// FromConfig builds Options from the validated configuration, so the
// worker and `starter codec-server` serve the same endpoint.
func FromConfig(c config.CodecServer, ring *codec.Keyring, namespace string, log *slog.Logger, metrics tally.Scope) (Options, error) {
	o := Options{
		Keyring:           ring,
		DefaultNamespace:  namespace,
		UIOrigin:          c.UIOrigin,
		TrustUIOrigin:     c.TrustUIOrigin,
		LoopbackPublished: c.LoopbackPublished,
		Logger:            log,
		Metrics:           metrics,
	}
	for _, t := range c.Tokens {
		o.Tokens = append(o.Tokens, Token{Name: t.Name, Secret: t.Secret})
	}
	if c.OIDC.Issuer != "" {
		a, err := NewAccessTokens(OIDCOptions{
			Issuer:      c.OIDC.Issuer,
			JWKSURL:     c.OIDC.JWKSURL,
			Audience:    c.OIDC.Audience,
			GroupsClaim: c.OIDC.GroupsClaim,
			Groups:      c.OIDC.Groups,
		})
		if err != nil {
			return Options{}, err
		}
		o.AccessTokens = a
	}
	return o, nil
}
