package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jetinfer/jetinfer/auth"
	"github.com/jetinfer/jetinfer/node"
)

const authUsage = `Usage:
  jetinfer auth create-key --name NAME --privileges P[,P...] [--expiration 30d] [--auth-file FILE]
                            create an API key; prints Elasticsearch's create API key response
                            (id, name, api_key, encoded) once: only a hash is kept
  jetinfer auth invalidate-key ID [--auth-file FILE]   invalidate an API key
  jetinfer auth add-user --username NAME --privileges P[,P...] [--auth-file FILE]
                            add a basic-auth user; prints its generated password once
  jetinfer auth list [--auth-file FILE]                list keys and users (never secrets)

Privileges are Elasticsearch's cluster privileges: ` + "monitor_inference (GET and POST _inference), manage_inference\n" +
	`(also PUT, _update, DELETE, and starting and stopping _ml deployments), monitor_ml and manage_ml (the _ml API),
monitor, manage, all. A running jetinfer serve --auth-file FILE picks changes up within a second.
Clients send "Authorization: ApiKey <encoded>" (Elasticsearch clients' api_key), "Bearer <encoded>"
(OpenAI-style clients), or basic auth.
`

// authCmd runs the auth subcommands on an auth file.
func authCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, authUsage)
		return 2
	}
	cmd := args[0]
	switch cmd {
	case "create-key", "invalidate-key", "add-user", "list":
	case "help", "-h", "--help":
		fmt.Fprint(stdout, authUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "jetinfer auth: unknown command %q\n\n%s", cmd, authUsage)
		return 2
	}
	fs := flag.NewFlagSet("jetinfer auth "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.String("auth-file", "auth.json", "the auth `FILE` (env "+node.EnvName("auth-file")+")")
	name := fs.String("name", "", "create-key: the key's name")
	username := fs.String("username", "", "add-user: the user's name")
	privs := fs.String("privileges", "", "create-key, add-user: comma-separated cluster privileges")
	expiration := fs.String("expiration", "", "create-key: lifetime, as Elasticsearch's expiration (30d, 12h, 90m); default never")
	if v, ok := os.LookupEnv(node.EnvName("auth-file")); ok {
		*file = v
	}
	positional, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return 2
	}
	if cmd != "invalidate-key" && len(positional) > 0 {
		fmt.Fprintf(stderr, "jetinfer auth %s: unexpected argument %q\n", cmd, positional[0])
		return 2
	}
	// One command at a time changes the file: two at once would each
	// save what they read, and one change (an invalidation) be lost.
	unlock, err := lockFile(*file + ".lock")
	if err != nil {
		fmt.Fprintf(stderr, "jetinfer auth: %v\n", err)
		return 1
	}
	defer unlock()
	creds, err := auth.LoadCredentials(*file)
	if err != nil {
		fmt.Fprintf(stderr, "jetinfer auth: %v\n", err)
		return 1
	}
	var out any
	switch cmd {
	case "create-key":
		var ttl time.Duration
		if *expiration != "" {
			if ttl, err = parseLifetime(*expiration); err != nil {
				break
			}
		}
		out, err = creds.AddKey(auth.NewKey{Name: *name, Owner: ownerName(), Privileges: splitList(*privs), ExpiresIn: ttl}, time.Now())
	case "invalidate-key":
		if len(positional) != 1 {
			err = errors.New("invalidate-key takes one key id")
			break
		}
		id := positional[0]
		var previously bool
		if previously, err = creds.InvalidateKey(id); err == nil {
			// Elasticsearch's invalidate API key response.
			res := map[string]any{"invalidated_api_keys": []string{id}, "previously_invalidated_api_keys": []string{}, "error_count": 0}
			if previously {
				res["invalidated_api_keys"], res["previously_invalidated_api_keys"] = []string{}, []string{id}
			}
			out = res
		}
	case "add-user":
		var password string
		if password, err = creds.AddUser(auth.NewUser{Username: *username, Privileges: splitList(*privs)}); err == nil {
			out = struct {
				Username string `json:"username"`
				Password string `json:"password"`
			}{*username, password}
		}
	case "list":
		listCredentials(stdout, creds)
		return 0
	}
	if err == nil {
		err = creds.Save(*file)
	}
	if err != nil {
		fmt.Fprintf(stderr, "jetinfer auth %s: %v\n", cmd, err)
		return 1
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
	return 0
}

func listCredentials(w io.Writer, c auth.Credentials) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KIND\tID / USERNAME\tNAME\tPRIVILEGES\tSTATE")
	for _, k := range c.APIKeys {
		state := "active"
		switch {
		case k.Invalidated:
			state = "invalidated"
		case k.Expiration != nil && !time.Now().Before(*k.Expiration):
			state = "expired"
		case k.Expiration != nil:
			state = "expires " + k.Expiration.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "api_key\t%s\t%s\t%s\t%s\n", k.ID, k.Name, strings.Join(k.Privileges, ","), state)
	}
	for _, u := range c.Users {
		fmt.Fprintf(tw, "user\t%s\t\t%s\tactive\n", u.Username, strings.Join(u.Privileges, ","))
	}
	_ = tw.Flush()
}

// parseLifetime reads Elasticsearch's time units for an expiration: a
// whole number followed by d, h, m or s.
func parseLifetime(s string) (time.Duration, error) {
	units := map[string]time.Duration{"d": 24 * time.Hour, "h": time.Hour, "m": time.Minute, "s": time.Second}
	for suffix, unit := range units {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			if v, err := strconv.Atoi(n); err == nil && v > 0 {
				return time.Duration(v) * unit, nil
			}
		}
	}
	return 0, fmt.Errorf("expiration %q: want a positive whole number of d, h, m or s (30d)", s)
}

func splitList(s string) []string {
	var out []string
	for p := range strings.SplitSeq(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// lockFile holds an exclusive lock on path until unlock.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// ownerName is the user a key is created by, named in 403 texts.
func ownerName() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "jetinfer"
}
