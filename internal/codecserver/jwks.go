package codecserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// keySet is the issuer's signing keys, fetched on first use and again when
// a token's signature fails against the cached set (a rotated key). It
// replaces go-oidc's RemoteKeySet, which lets a token join a fetch that has
// already finished: a token signed with a key published a moment after a
// fetch could be checked against the set from before it, and be refused
// though the key was published (clean-clone CI met it twice). Here a token
// that fails against the set of generation g is checked against a set
// whose fetch ended after that, never an older one.
type keySet struct {
	url    string
	client *http.Client
	algs   []jose.SignatureAlgorithm

	mu       sync.Mutex
	keys     []jose.JSONWebKey
	gen      int           // fetches ended so far
	err      error         // the last fetch's error
	fetching chan struct{} // closed when the running fetch ends; nil when none runs
}

// fetchTimeout bounds one key-set fetch; it runs for every token waiting
// on it, so no one request's context may cancel it.
const fetchTimeout = 30 * time.Second

func newKeySet(url string, client *http.Client, algs []string) *keySet {
	if client == nil {
		client = http.DefaultClient
	}
	k := &keySet{url: url, client: client}
	for _, a := range algs {
		k.algs = append(k.algs, jose.SignatureAlgorithm(a))
	}
	return k
}

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, k.algs)
	if err != nil {
		return nil, fmt.Errorf("malformed token: %w", err)
	}
	k.mu.Lock()
	keys, gen := k.keys, k.gen
	k.mu.Unlock()
	if gen > 0 {
		if payload, ok := verifyWith(jws, keys); ok {
			return payload, nil
		}
	}
	keys, err = k.refresh(ctx, gen)
	if err != nil {
		return nil, fmt.Errorf("fetching keys: %w", err)
	}
	if payload, ok := verifyWith(jws, keys); ok {
		return payload, nil
	}
	return nil, errors.New("failed to verify token signature")
}

// verifyWith checks jws against the keys of its key ID (every key when it
// names none).
func verifyWith(jws *jose.JSONWebSignature, keys []jose.JSONWebKey) ([]byte, bool) {
	kid := ""
	if len(jws.Signatures) > 0 {
		kid = jws.Signatures[0].Header.KeyID
	}
	for _, key := range keys {
		if kid != "" && key.KeyID != kid {
			continue
		}
		if payload, err := jws.Verify(&key); err == nil {
			return payload, true
		}
	}
	return nil, false
}

// refresh returns the keys of a fetch that ended after generation after,
// starting one unless one is running.
func (k *keySet) refresh(ctx context.Context, after int) ([]jose.JSONWebKey, error) {
	for {
		k.mu.Lock()
		if k.gen > after {
			keys, err := k.keys, k.err
			k.mu.Unlock()
			return keys, err
		}
		if k.fetching == nil {
			done := make(chan struct{})
			k.fetching = done
			go k.fetch(done)
		}
		done := k.fetching
		k.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-done:
		}
	}
}

// fetch loads the key set and ends generation gen+1; a failed fetch keeps
// the keys it had and records the error.
func (k *keySet) fetch(done chan struct{}) {
	keys, err := k.load()
	k.mu.Lock()
	if err == nil {
		k.keys = keys
	}
	k.err = err
	k.gen++
	k.fetching = nil
	k.mu.Unlock()
	close(done)
}

func (k *keySet) load() ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("key set %s: %s", k.url, resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("key set %s: %w", k.url, err)
	}
	return set.Keys, nil
}
