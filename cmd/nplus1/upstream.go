package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// defaultPGPort is PostgreSQL's default port (DEF_PGPORT).
const defaultPGPort = "5432"

// upstreamSSLModes are the sslmode values a postgres:// URL may carry, as in
// libpq; proxy.Config maps allow to prefer and verify-ca to verify-full.
var upstreamSSLModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// upstream is where the proxy connects, from --upstream.
type upstream struct {
	host        string // without brackets for IPv6
	addr        string // host:port
	sslmode     string // from the URL; "" when absent
	sslrootcert string // from the URL; "" when absent
}

// parseUpstream reads "host:port", "host" (port 5432), or a postgres:// or
// postgresql:// URL, from which only host, port, sslmode and sslrootcert are
// taken (host and port also from query parameters, as libpq does): the user,
// password and database are the client's to choose.
func parseUpstream(s string) (upstream, error) {
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		return parseUpstreamURL(s)
	}
	if strings.Contains(s, "://") {
		return upstream{}, errors.New("want host:port or a postgres:// URL")
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		// A bare host name or IP address: the default port.
		if strings.Contains(s, ":") && net.ParseIP(s) == nil {
			return upstream{}, fmt.Errorf("want host:port or a postgres:// URL: %v", err)
		}
		host, port = s, defaultPGPort
	}
	return newUpstream(host, port)
}

func parseUpstreamURL(s string) (upstream, error) {
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the whole URL, password included: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return upstream{}, fmt.Errorf("invalid URL: %v", err)
	}
	if strings.Contains(u.Host, ",") {
		return upstream{}, errors.New("URLs with several hosts are not supported: give one host")
	}
	// As in libpq, host and port query parameters override the authority.
	q := u.Query()
	host, port := u.Hostname(), u.Port()
	if h := q.Get("host"); h != "" {
		host = h
	}
	if p := q.Get("port"); p != "" {
		port = p
	}
	if port == "" {
		port = defaultPGPort
	}
	up, err := newUpstream(host, port)
	if err != nil {
		return upstream{}, err
	}
	up.sslmode = q.Get("sslmode")
	if up.sslmode != "" && !slices.Contains(upstreamSSLModes, up.sslmode) {
		return upstream{}, fmt.Errorf("sslmode %q in URL: want one of %s", up.sslmode, strings.Join(upstreamSSLModes, ", "))
	}
	up.sslrootcert = q.Get("sslrootcert")
	return up, nil
}

func newUpstream(host, port string) (upstream, error) {
	if host == "" {
		return upstream{}, errors.New("no host: the proxy connects over TCP, give a host name or address")
	}
	if strings.HasPrefix(host, "/") {
		return upstream{}, errors.New("Unix-domain sockets are not supported: give a host name or address")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return upstream{}, fmt.Errorf("invalid port %q", port)
	}
	return upstream{host: host, addr: net.JoinHostPort(host, port)}, nil
}
