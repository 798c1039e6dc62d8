package auth

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Certificates serves the HTTP API's TLS key pair from its files and
// reloads it when either file changes (looked at on a handshake, at most
// every reloadEvery), so that a renewed certificate needs no restart.
type Certificates struct {
	certFile, keyFile string
	log               zerolog.Logger

	mu                sync.Mutex
	pair              *tls.Certificate
	certStat, keyStat os.FileInfo
	checked           time.Time
}

// LoadCertificates reads the PEM key pair; both files must be valid.
func LoadCertificates(certFile, keyFile string, log zerolog.Logger) (*Certificates, error) {
	c := &Certificates{certFile: certFile, keyFile: keyFile, log: log.With().Str("component", "tls").Logger()}
	if err := c.load(); err != nil {
		return nil, err
	}
	c.checked = time.Now()
	return c, nil
}

func (c *Certificates) load() error {
	certStat, err := os.Stat(c.certFile)
	if err != nil {
		return fmt.Errorf("tls certificate: %w", err)
	}
	keyStat, err := os.Stat(c.keyFile)
	if err != nil {
		return fmt.Errorf("tls key: %w", err)
	}
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls key pair %s, %s: %w", c.certFile, c.keyFile, err)
	}
	c.pair, c.certStat, c.keyStat = &pair, certStat, keyStat
	return nil
}

// GetCertificate is tls.Config's GetCertificate.
func (c *Certificates) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= reloadEvery {
		c.checked = now
		certStat, cerr := os.Stat(c.certFile)
		keyStat, kerr := os.Stat(c.keyFile)
		if cerr == nil && kerr == nil && (!sameFile(c.certStat, certStat) || !sameFile(c.keyStat, keyStat)) {
			// A pair half-written (the certificate renewed, its key not
			// yet) fails to load: the old pair serves until both agree.
			if err := c.load(); err != nil {
				// Tried again when either file changes next.
				c.certStat, c.keyStat = certStat, keyStat
				c.log.Warn().Err(err).Msg("TLS files changed but do not load; serving the pair loaded before")
			} else {
				c.log.Info().Str("certificate", c.certFile).Msg("TLS certificate reloaded")
			}
		}
	}
	return c.pair, nil
}

// ServerConfig is the TLS configuration of the HTTP API.
func (c *Certificates) ServerConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: c.GetCertificate}
}
