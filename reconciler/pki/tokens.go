package pki

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Join tokens look like kubeadm's bootstrap tokens with berth's CA pin
// appended, so that an agent holding nothing but the token can verify the
// controller on its first call:
//
//	berth1.<id>.<secret>.<ca-sha256>
//
// id is 6 and secret 16 characters of [a-z0-9] (about 83 bits of secret);
// ca-sha256 is the CA certificate's fingerprint (64 hex digits). The id is
// public (listed, logged); the secret is shown once at creation and stored
// only as its SHA-256.
const (
	tokenVersion   = "berth1"
	tokenIDLen     = 6
	tokenSecretLen = 16
	tokenAlphabet  = "abcdefghijklmnopqrstuvwxyz0123456789"
	// DefaultTokenTTL is how long a token admits nodes unless told otherwise.
	DefaultTokenTTL = 24 * time.Hour
)

var (
	// ErrInvalidToken means a join token was refused: malformed, unknown,
	// wrong secret, for another controller, expired or revoked. Messages
	// wrapping it never contain the token's secret.
	ErrInvalidToken = errors.New("join token refused")
	// ErrInvalidRequest means a join request was malformed (node name,
	// certificate request).
	ErrInvalidRequest = errors.New("invalid join request")
	// ErrTokenNotFound means no token has the given id.
	ErrTokenNotFound = errors.New("no such token")
)

// TokenInfo describes a token without its secret.
type TokenInfo struct {
	ID          string    `json:"id"`
	Description string    `json:"description,omitempty"`
	Created     time.Time `json:"created"`
	// Expires is zero for a token that never expires.
	Expires time.Time `json:"expires,omitzero"`
	// UsedBy lists the nodes that joined with the token, in order of first
	// use.
	UsedBy  []string  `json:"usedBy,omitempty"`
	Revoked time.Time `json:"revoked,omitzero"`
}

// Token states, as State reports them.
const (
	TokenValid   = "valid"
	TokenExpired = "expired"
	TokenRevoked = "revoked"
)

// State is TokenValid, TokenExpired or TokenRevoked at now.
func (i TokenInfo) State(now time.Time) string {
	switch {
	case !i.Revoked.IsZero():
		return TokenRevoked
	case !i.Expires.IsZero() && !now.Before(i.Expires):
		return TokenExpired
	}
	return TokenValid
}

// Tokens is the controller's list of join tokens, a JSON file (0600) in the
// PKI directory. Every call reads the file afresh under the directory lock,
// so tokens created or revoked by `berth token` take effect in a running
// controller at once.
type Tokens struct {
	path  string
	dir   string
	caPin string
	// Clock returns the current time; nil means time.Now.
	Clock func() time.Time
}

// NewTokens returns the token list kept in dir for the CA whose fingerprint
// is caFingerprint (see CA.Fingerprint); the file is created on first use.
func NewTokens(dir, caFingerprint string) *Tokens {
	return &Tokens{path: filepath.Join(dir, TokensFile), dir: dir, caPin: caFingerprint}
}

type tokenRecord struct {
	TokenInfo
	SecretSHA256 string `json:"secretSHA256"`
}

type tokenFile struct {
	Version int           `json:"version"`
	Tokens  []tokenRecord `json:"tokens"`
}

func (t *Tokens) now() time.Time {
	if t.Clock != nil {
		return t.Clock()
	}
	return time.Now()
}

// Create makes a token valid for ttl (0: forever) and returns it with its
// description. The returned token string is the only place its secret ever
// appears.
func (t *Tokens) Create(description string, ttl time.Duration) (string, TokenInfo, error) {
	if ttl < 0 {
		return "", TokenInfo{}, fmt.Errorf("token ttl %s: want 0 (never expires) or more", ttl)
	}
	secret, err := randomString(tokenSecretLen)
	if err != nil {
		return "", TokenInfo{}, err
	}
	var info TokenInfo
	err = t.update(func(f *tokenFile) error {
		var id string
		for {
			if id, err = randomString(tokenIDLen); err != nil {
				return err
			}
			if f.find(id) < 0 {
				break
			}
		}
		info = TokenInfo{ID: id, Description: description, Created: t.now().UTC().Truncate(time.Second)}
		if ttl > 0 {
			info.Expires = info.Created.Add(ttl)
		}
		f.Tokens = append(f.Tokens, tokenRecord{TokenInfo: info, SecretSHA256: hashSecret(secret)})
		return nil
	})
	if err != nil {
		return "", TokenInfo{}, fmt.Errorf("create token: %w", err)
	}
	return strings.Join([]string{tokenVersion, info.ID, secret, t.caPin}, "."), info, nil
}

// List returns every token, oldest first, without secrets.
func (t *Tokens) List() ([]TokenInfo, error) {
	var out []TokenInfo
	err := t.update(func(f *tokenFile) error {
		for _, r := range f.Tokens {
			out = append(out, r.TokenInfo)
		}
		return errUnchanged
	})
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// Revoke stops the token with the given id from admitting nodes. Nodes that
// already joined with it keep their certificates. Revoking twice is not an
// error.
func (t *Tokens) Revoke(id string) error {
	err := t.update(func(f *tokenFile) error {
		i := f.find(id)
		if i < 0 {
			return fmt.Errorf("%w: %q", ErrTokenNotFound, id)
		}
		if f.Tokens[i].Revoked.IsZero() {
			f.Tokens[i].Revoked = t.now().UTC().Truncate(time.Second)
			return nil
		}
		return errUnchanged
	})
	if err != nil {
		return fmt.Errorf("revoke token: %w", err)
	}
	return nil
}

// Validate checks a presented token and returns its id. Errors wrap
// ErrInvalidToken and say why (unknown, expired, revoked, another
// controller's) without repeating the secret.
func (t *Tokens) Validate(token string) (string, error) {
	id, secret, pin, err := parseToken(token)
	if err != nil {
		return "", err
	}
	if pin != t.caPin {
		return "", fmt.Errorf("%w: the token was made for another controller (its CA fingerprint differs)", ErrInvalidToken)
	}
	var info TokenInfo
	err = t.update(func(f *tokenFile) error {
		i := f.find(id)
		want := make([]byte, sha256.Size*2)
		if i >= 0 {
			want = []byte(f.Tokens[i].SecretSHA256)
		}
		// Unknown ids and wrong secrets get the same answer; the id is public,
		// the comparison of the secret is constant-time.
		if subtle.ConstantTimeCompare([]byte(hashSecret(secret)), want) != 1 || i < 0 {
			return fmt.Errorf("%w: token %s is not known to this controller", ErrInvalidToken, id)
		}
		info = f.Tokens[i].TokenInfo
		return errUnchanged
	})
	if err != nil {
		return "", err
	}
	switch info.State(t.now()) {
	case TokenRevoked:
		return "", fmt.Errorf("%w: token %s was revoked", ErrInvalidToken, id)
	case TokenExpired:
		return "", fmt.Errorf("%w: token %s expired at %s", ErrInvalidToken, id, info.Expires.Format(time.RFC3339))
	}
	return id, nil
}

// MarkUsed records that node joined with the token id.
func (t *Tokens) MarkUsed(id, node string) error {
	err := t.update(func(f *tokenFile) error {
		i := f.find(id)
		if i < 0 {
			return fmt.Errorf("%w: %q", ErrTokenNotFound, id)
		}
		if slices.Contains(f.Tokens[i].UsedBy, node) {
			return errUnchanged
		}
		f.Tokens[i].UsedBy = append(f.Tokens[i].UsedBy, node)
		return nil
	})
	if err != nil {
		return fmt.Errorf("record use of token %s: %w", id, err)
	}
	return nil
}

// errUnchanged tells update that fn only read the file.
var errUnchanged = errors.New("unchanged")

// update runs fn over the token file under the directory lock and writes
// the result back unless fn returns an error (errUnchanged: nothing to
// write, no error).
func (t *Tokens) update(fn func(*tokenFile) error) error {
	unlock, err := lockDir(t.dir)
	if err != nil {
		return err
	}
	defer unlock()
	f := &tokenFile{Version: 1}
	data, err := os.ReadFile(t.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(data, f); err != nil {
			return fmt.Errorf("%s: %w", t.path, err)
		}
		if f.Version != 1 {
			return fmt.Errorf("%s: unsupported version %d", t.path, f.Version)
		}
	}
	switch err := fn(f); {
	case errors.Is(err, errUnchanged):
		return nil
	case err != nil:
		return err
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return writeFile(t.path, append(out, '\n'))
}

func (f *tokenFile) find(id string) int {
	for i, r := range f.Tokens {
		if r.ID == id {
			return i
		}
	}
	return -1
}

// parseToken splits a token into its parts. Errors describe the shape
// expected, never the value received.
func parseToken(token string) (id, secret, pin string, err error) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 4 || parts[0] != tokenVersion {
		return "", "", "", fmt.Errorf("%w: malformed token (want %s.<id>.<secret>.<ca-sha256>)", ErrInvalidToken, tokenVersion)
	}
	id, secret, pin = parts[1], parts[2], parts[3]
	if len(id) != tokenIDLen || !inAlphabet(id) || len(secret) != tokenSecretLen || !inAlphabet(secret) {
		return "", "", "", fmt.Errorf("%w: malformed token id or secret (want %d and %d characters of [a-z0-9])", ErrInvalidToken, tokenIDLen, tokenSecretLen)
	}
	if b, err := hex.DecodeString(pin); err != nil || len(b) != sha256.Size || strings.ToLower(pin) != pin {
		return "", "", "", fmt.Errorf("%w: malformed CA fingerprint in token (want 64 lowercase hex digits)", ErrInvalidToken)
	}
	return id, secret, pin, nil
}

func inAlphabet(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune(tokenAlphabet, c) {
			return false
		}
	}
	return true
}

func hashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

func randomString(n int) (string, error) {
	b := make([]byte, n)
	max := big.NewInt(int64(len(tokenAlphabet)))
	for i := range b {
		k, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", fmt.Errorf("random token: %w", err)
		}
		b[i] = tokenAlphabet[k.Int64()]
	}
	return string(b), nil
}

// ValidateNodeName checks that name can be a node's name: a DNS subdomain,
// as Kubernetes requires of node names.
func ValidateNodeName(name string) error {
	if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
		return fmt.Errorf("%w: node name %q: %s", ErrInvalidRequest, name, strings.Join(msgs, "; "))
	}
	return nil
}
