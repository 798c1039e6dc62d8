package auth

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Credentials is the content of an auth file: API keys and users, each
// with the bcrypt hash of its secret (never the secret) and its cluster
// privileges. The file is JSON, written with mode 0600.
type Credentials struct {
	APIKeys []APIKey `json:"api_keys"`
	Users   []User   `json:"users"`
}

// APIKey is an Elasticsearch-style API key: clients send
// "Authorization: ApiKey base64(id:secret)", or the same value as a Bearer
// token.
type APIKey struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// Owner is the user the key acts for, named in 403 texts as
	// Elasticsearch names the user who created a key.
	Owner      string     `json:"owner"`
	Hash       string     `json:"hash"`
	Privileges []string   `json:"privileges"`
	Created    time.Time  `json:"created"`
	Expiration *time.Time `json:"expiration,omitempty"`
	// Invalidated keys stay listed, as Elasticsearch keeps them, so that a
	// client using one is told it was invalidated.
	Invalidated bool `json:"invalidated,omitempty"`
}

// User is a basic-auth user.
type User struct {
	Username   string   `json:"username"`
	Hash       string   `json:"hash"`
	Privileges []string `json:"privileges"`
}

// DefaultHashCost is the bcrypt cost of the hashes written. A request
// verifies a secret against its hash once; later requests with the same
// secret are checked against an in-memory digest (see Guard).
const DefaultHashCost = bcrypt.DefaultCost

func hash(secret string, cost int) ([]byte, error) {
	if cost == 0 {
		cost = DefaultHashCost
	}
	return bcrypt.GenerateFromPassword([]byte(secret), cost)
}

// LoadCredentials reads an auth file. A missing file holds no credentials.
func LoadCredentials(path string) (Credentials, error) {
	var c Credentials
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(data, &c); err != nil {
		return c, fmt.Errorf("auth file %s: %w", path, err)
	}
	return c, c.validate()
}

func (c Credentials) validate() error {
	ids, names := map[string]bool{}, map[string]bool{}
	for _, k := range c.APIKeys {
		switch {
		case k.ID == "" || k.Hash == "":
			return fmt.Errorf("API key [%s]: id and hash are required", k.ID)
		case ids[k.ID]:
			return fmt.Errorf("API key id [%s] is listed twice", k.ID)
		}
		ids[k.ID] = true
		if err := CheckPrivileges(k.Privileges); err != nil {
			return fmt.Errorf("API key [%s]: %w", k.ID, err)
		}
	}
	for _, u := range c.Users {
		switch {
		case u.Username == "" || u.Hash == "":
			return fmt.Errorf("user [%s]: username and hash are required", u.Username)
		case names[u.Username]:
			return fmt.Errorf("user [%s] is listed twice", u.Username)
		}
		names[u.Username] = true
		if err := CheckPrivileges(u.Privileges); err != nil {
			return fmt.Errorf("user [%s]: %w", u.Username, err)
		}
	}
	return nil
}

// Save writes c to path atomically (a reader sees the old file or the new
// one, never half of it), with mode 0600.
func (c Credentials) Save(path string) error {
	if err := c.validate(); err != nil {
		return err
	}
	data, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// CreatedKey is what creating an API key returns, in the fields and order
// of Elasticsearch's create API key response: the secret is shown here
// once and stored only as a hash.
type CreatedKey struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Expiration int64  `json:"expiration,omitempty"` // epoch milliseconds
	APIKey     string `json:"api_key"`
	Encoded    string `json:"encoded"`
}

// NewKey is a request to create an API key.
type NewKey struct {
	Name       string
	Owner      string
	Privileges []string
	// ExpiresIn, when positive, makes the key expire that long after now.
	ExpiresIn time.Duration
	// HashCost is the bcrypt cost; 0 means DefaultHashCost.
	HashCost int
}

// NewUser is a request to add a basic-auth user.
type NewUser struct {
	Username   string
	Privileges []string
	// HashCost is the bcrypt cost; 0 means DefaultHashCost.
	HashCost int
}

// AddKey creates an API key in c.
func (c *Credentials) AddKey(req NewKey, now time.Time) (CreatedKey, error) {
	if req.Name == "" {
		return CreatedKey{}, errors.New("an API key needs a name")
	}
	if len(req.Privileges) == 0 {
		return CreatedKey{}, fmt.Errorf("an API key needs at least one privilege of [%s]", strings.Join(Privileges(), ","))
	}
	if err := CheckPrivileges(req.Privileges); err != nil {
		return CreatedKey{}, err
	}
	// 20 characters, as Elasticsearch's ids; never starting with '-',
	// which a command line would read as a flag.
	id, err := "-", error(nil)
	for strings.HasPrefix(id, "-") {
		if id, err = randomToken(15); err != nil {
			return CreatedKey{}, err
		}
	}
	secret, err := randomToken(16) // 22 characters, as Elasticsearch's secrets
	if err != nil {
		return CreatedKey{}, err
	}
	h, err := hash(secret, req.HashCost)
	if err != nil {
		return CreatedKey{}, err
	}
	owner := req.Owner
	if owner == "" {
		owner = "jetinfer"
	}
	k := APIKey{ID: id, Name: req.Name, Owner: owner, Hash: string(h), Privileges: slices.Clone(req.Privileges), Created: now.UTC()}
	out := CreatedKey{ID: id, Name: req.Name, APIKey: secret, Encoded: base64.StdEncoding.EncodeToString([]byte(id + ":" + secret))}
	if req.ExpiresIn > 0 {
		exp := now.Add(req.ExpiresIn).UTC()
		k.Expiration = &exp
		out.Expiration = exp.UnixMilli()
	}
	c.APIKeys = append(c.APIKeys, k)
	return out, nil
}

// InvalidateKey marks the key id invalidated; previously reports whether
// it already was.
func (c *Credentials) InvalidateKey(id string) (previously bool, err error) {
	for i := range c.APIKeys {
		if c.APIKeys[i].ID == id {
			previously = c.APIKeys[i].Invalidated
			c.APIKeys[i].Invalidated = true
			return previously, nil
		}
	}
	return false, fmt.Errorf("no API key with id [%s]", id)
}

// AddUser adds a basic-auth user with a generated password, returned once.
func (c *Credentials) AddUser(req NewUser) (password string, err error) {
	username, privs := req.Username, req.Privileges
	if username == "" {
		return "", errors.New("a user needs a username")
	}
	if slices.ContainsFunc(c.Users, func(u User) bool { return u.Username == username }) {
		return "", fmt.Errorf("user [%s] exists", username)
	}
	if len(privs) == 0 {
		return "", fmt.Errorf("a user needs at least one privilege of [%s]", strings.Join(Privileges(), ","))
	}
	if err := CheckPrivileges(privs); err != nil {
		return "", err
	}
	if password, err = randomToken(18); err != nil {
		return "", err
	}
	h, err := hash(password, req.HashCost)
	if err != nil {
		return "", err
	}
	c.Users = append(c.Users, User{Username: username, Hash: string(h), Privileges: slices.Clone(privs)})
	return password, nil
}

// randomToken is n random bytes in URL-safe base64 without padding.
func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
