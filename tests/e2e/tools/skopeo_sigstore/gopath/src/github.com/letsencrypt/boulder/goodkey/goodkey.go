// Package goodkey is NOT letsencrypt/boulder's goodkey: it is a fail-closed
// stand-in so that the vendored sigstore cryptoutils package compiles without
// boulder (not packaged in Debian bookworm).
//
// Only cryptoutils.ValidatePubKey uses it, for RSA keys; nothing on skopeo's
// sign or verify path calls ValidatePubKey. If anything ever did, every RSA
// key would be refused here rather than accepted unchecked.
package goodkey

import (
	"context"
	"crypto"
	"errors"
)

// Config mirrors the one field sigstore sets.
type Config struct {
	FermatRounds int
}

// KeyPolicy refuses every key.
type KeyPolicy struct{}

// NewKeyPolicy returns the refusing policy.
func NewKeyPolicy(_ *Config, _ interface{}) (KeyPolicy, error) {
	return KeyPolicy{}, nil
}

// GoodKey always fails: the real boulder policy is not vendored here.
func (KeyPolicy) GoodKey(_ context.Context, _ crypto.PublicKey) error {
	return errors.New("goodkey: boulder key policy not available in this build (rules_shiko test verifier)")
}
