//go:build !nodev

package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// devSecrets are the dev stack's payload key and codec token. With -dev-db
// they are kept in PATH.payload-key and PATH.codec-token (0600) beside the
// database: the persisted histories were written with that key, and a new
// one would leave them unreadable. Without -dev-db they live in memory,
// like everything else then.
type devSecrets struct {
	key, keyFile     string
	token, tokenFile string
}

func loadDevSecrets(dbPath string) (devSecrets, error) {
	var s devSecrets
	var err error
	if dbPath == "" {
		if s.key, err = randomB64(32); err != nil {
			return s, err
		}
		s.token, err = randomB64(24)
		return s, err
	}
	s.keyFile, s.tokenFile = dbPath+".payload-key", dbPath+".codec-token"
	if s.key, err = readOrCreate(s.keyFile, 32); err != nil {
		return s, err
	}
	if b, err := base64.StdEncoding.DecodeString(s.key); err != nil || len(b) != 32 {
		return s, fmt.Errorf("dev payload key %s is not 32 base64 bytes; delete it together with the -dev-db files to start over", s.keyFile)
	}
	s.token, err = readOrCreate(s.tokenFile, 24)
	return s, err
}

func readOrCreate(path string, n int) (string, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	v, err := randomB64(n)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(v+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return v, nil
}

func randomB64(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}
