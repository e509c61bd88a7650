package codecserver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// OIDCOptions configure AccessTokens: which person's access token, passed
// by the Web UI ("pass the user access token"), may decode.
type OIDCOptions struct {
	// Issuer must equal the token's iss claim exactly.
	Issuer string
	// JWKSURL is where the issuer publishes its signing keys. They are
	// fetched on first use and cached; a token signed with a key the cache
	// does not hold makes the set re-fetch, which is how a rotated key is
	// picked up without a restart.
	JWKSURL string
	// Audience must be one of the token's aud values.
	Audience string
	// GroupsClaim names the claim holding the person's groups or roles: a
	// string or a list of strings. A dotted name walks into objects
	// ("realm_access.roles").
	GroupsClaim string
	// Groups are the groups allowed to decode; a token needs one of them.
	Groups []string
	// HTTPClient fetches the key set; nil uses http.DefaultClient.
	HTTPClient *http.Client
	// Now is the clock for expiry; nil = time.Now.
	Now func() time.Time
}

// AccessTokens verifies access tokens. The signature, issuer, audience and
// expiry checks are go-oidc's; this type adds only the group rule and
// names the person for the audit trail.
type AccessTokens struct {
	verifier *oidc.IDTokenVerifier
	claim    []string
	groups   []string
}

// errGroup is a valid token of a person outside the allowed groups.
var errGroup = errors.New("no allowed group in the token")

// NewAccessTokens builds the verifier. It does not contact the issuer: the
// keys are fetched on the first token, so a codec server starts while the
// identity provider is down and serves service tokens meanwhile.
func NewAccessTokens(o OIDCOptions) (*AccessTokens, error) {
	if o.Issuer == "" || o.JWKSURL == "" || o.Audience == "" || o.GroupsClaim == "" || len(o.Groups) == 0 {
		return nil, errors.New("codecserver: OIDC needs issuer, JWKS URL, audience, groups claim and at least one group")
	}
	// Identity providers sign access tokens with RSA or ECDSA; "none"
	// and HMAC are never accepted.
	algs := []string{oidc.RS256, oidc.RS384, oidc.RS512, oidc.PS256, oidc.PS384, oidc.PS512, oidc.ES256, oidc.ES384, oidc.ES512}
	return &AccessTokens{
		verifier: oidc.NewVerifier(o.Issuer, newKeySet(o.JWKSURL, o.HTTPClient, algs), &oidc.Config{
			ClientID:             o.Audience,
			SupportedSigningAlgs: algs,
			Now:                  o.Now,
		}),
		claim:  strings.Split(o.GroupsClaim, "."),
		groups: o.Groups,
	}, nil
}

// Verify returns the token's subject when the token is valid and names an
// allowed group. The error says which check failed, never the token.
func (a *AccessTokens) Verify(ctx context.Context, raw string) (string, error) {
	tok, err := a.verifier.Verify(ctx, raw)
	if err != nil {
		return "", err
	}
	if tok.Subject == "" {
		return "", errors.New("token has no subject")
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return "", fmt.Errorf("token claims: %w", err)
	}
	for _, g := range groupsIn(claims, a.claim) {
		if slices.Contains(a.groups, g) {
			return tok.Subject, nil
		}
	}
	return tok.Subject, errGroup
}

// groupsIn reads a string or list-of-strings claim at path.
func groupsIn(claims map[string]any, path []string) []string {
	var v any = claims
	for _, p := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	switch g := v.(type) {
	case string:
		return []string{g}
	case []any:
		var out []string
		for _, e := range g {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// refusal names the failed check in a few fixed words for the audit line
// and the metric label.
func refusal(err error) string {
	var expired *oidc.TokenExpiredError
	switch {
	case errors.As(err, &expired):
		return "access token expired"
	case errors.Is(err, errGroup):
		return "access token: group not allowed"
	case strings.Contains(err.Error(), "expected audience"):
		return "access token: wrong audience"
	case strings.Contains(err.Error(), "id token issued by a different provider"):
		return "access token: wrong issuer"
	}
	return "access token invalid"
}
