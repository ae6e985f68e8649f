package blob

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Location names a store as a URL:
//
//	file:///var/lib/phigate/store        (or a plain path) a local directory: FS
//	s3://BUCKET?endpoint=https://HOST:PORT[&region=R][&ca=FILE]
//
// For s3 the credentials come from Credentials (the environment or a file,
// never the URL: a URL with a user or password is refused, so that no
// secret ends up in a configuration file, a process list or a log line).
type Location struct {
	Scheme   string // "file" or "s3"
	Dir      string // file: the directory
	Bucket   string // s3
	Endpoint string // s3: https://host[:port]
	Region   string // s3, optional
	CAFile   string // s3, optional: PEM roots for the endpoint's certificate
}

// String is the location as ParseLocation reads it.
func (l Location) String() string {
	if l.Scheme == "file" {
		return (&url.URL{Scheme: "file", Path: l.Dir}).String()
	}
	q := url.Values{"endpoint": {l.Endpoint}}
	if l.Region != "" {
		q.Set("region", l.Region)
	}
	if l.CAFile != "" {
		q.Set("ca", l.CAFile)
	}
	return "s3://" + l.Bucket + "?" + q.Encode()
}

// ParseLocation reads a store URL (see Location).
func ParseLocation(s string) (Location, error) {
	if s == "" {
		return Location{}, errors.New("blob: empty store location")
	}
	if !strings.Contains(s, "://") {
		if strings.HasPrefix(s, "file:") || strings.HasPrefix(s, "s3:") {
			return Location{}, fmt.Errorf("blob: store %q: want file:///absolute/dir or s3://BUCKET?endpoint=...", s)
		}
		abs, err := filepath.Abs(s)
		if err != nil {
			return Location{}, fmt.Errorf("blob: store %q: %w", s, err)
		}
		return Location{Scheme: "file", Dir: abs}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return Location{}, fmt.Errorf("blob: store location: %w", err)
	}
	if u.User != nil {
		return Location{}, errors.New("blob: store location: credentials do not belong in the URL; use PHIGATE_S3_ACCESS_KEY/PHIGATE_S3_SECRET_KEY or a credentials file")
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return Location{}, fmt.Errorf("blob: store %q: file URLs name a local path (file:///dir)", s)
		}
		if u.Path == "" || !filepath.IsAbs(u.Path) {
			return Location{}, fmt.Errorf("blob: store %q: want file:///absolute/dir", s)
		}
		return Location{Scheme: "file", Dir: filepath.Clean(u.Path)}, nil
	case "s3":
		q := u.Query()
		l := Location{Scheme: "s3", Bucket: u.Host, Endpoint: q.Get("endpoint"), Region: q.Get("region"), CAFile: q.Get("ca")}
		for k := range q {
			switch k {
			case "endpoint", "region", "ca":
			default:
				return Location{}, fmt.Errorf("blob: store location: unknown parameter %q (want endpoint, region, ca)", k)
			}
		}
		if l.Bucket == "" || (u.Path != "" && u.Path != "/") {
			return Location{}, fmt.Errorf("blob: store %q: want s3://BUCKET?endpoint=https://host:port", s)
		}
		if l.Endpoint == "" {
			return Location{}, fmt.Errorf("blob: store %q: no endpoint= parameter", s)
		}
		return l, nil
	}
	return Location{}, fmt.Errorf("blob: store %q: unknown scheme %q (want file or s3)", s, u.Scheme)
}

// Open makes the store l names. creds is called for s3 only.
func Open(l Location, creds func() (Credentials, error)) (Store, error) {
	switch l.Scheme {
	case "file":
		return NewFS(l.Dir)
	case "s3":
		c, err := creds()
		if err != nil {
			return nil, err
		}
		cfg := S3Config{Endpoint: l.Endpoint, Bucket: l.Bucket, Region: l.Region, Credentials: c}
		if l.CAFile != "" {
			pem, err := os.ReadFile(l.CAFile)
			if err != nil {
				return nil, fmt.Errorf("blob: s3 ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("blob: s3 ca %s: no PEM certificate", l.CAFile)
			}
			cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool}
		}
		return NewS3(cfg)
	}
	return nil, fmt.Errorf("blob: unknown store scheme %q", l.Scheme)
}
