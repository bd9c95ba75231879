// Package pgtest starts a throwaway PostgreSQL server for tests: initdb into a
// temporary directory, a random loopback port, TLS with a generated
// certificate, and one role per authentication method (trust, password, md5,
// scram-sha-256).
//
// The server binaries are found on PATH, through `pg_config --bindir`, or under
// /usr/lib/postgresql/*/bin (newest first). A missing server is an error, never
// a skip: run the project's test script, which installs one.
//
// When the process runs as root (PostgreSQL refuses to), the server runs as the
// "postgres" user, or "nobody" when there is no such user.
package pgtest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// Roles created in every server. Each logs in over TCP with the method in its
// name; Password is the password of all of them but Superuser (trust).
const (
	Superuser    = "nplus1"
	UserPassword = "u_password"
	UserMD5      = "u_md5"
	UserSCRAM    = "u_scram"
	Password     = "s3cret-pw"
	Database     = "nplus1"
)

// Server is a running PostgreSQL.
type Server struct {
	Host    string
	Port    int
	BinDir  string
	Dir     string // data directory
	CACert  []byte // PEM of the CA that signed the server certificate
	CAFile  string // CACert written to a file readable by clients
	Version int    // server_version_num

	cmd  *exec.Cmd
	done chan struct{}
	log  *bytes.Buffer
	once sync.Once
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// URL returns a connection URL for user (password added for the password roles).
// extra is appended as query parameters ("sslmode=disable" is the default).
func (s *Server) URL(user string, extra ...string) string {
	return URLFor(s.Addr(), user, extra...)
}

// URLFor builds a URL for addr with the conventions of URL.
func URLFor(addr, user string, extra ...string) string {
	cred := user
	if user != Superuser {
		cred += ":" + Password
	}
	q := "sslmode=disable"
	if len(extra) > 0 {
		q = strings.Join(extra, "&")
		if !strings.Contains(q, "sslmode=") {
			q += "&sslmode=disable"
		}
	}
	return fmt.Sprintf("postgres://%s@%s/%s?%s", cred, addr, Database, q)
}

// Log returns what the server wrote so far.
func (s *Server) Log() string { return s.log.String() }

// FindBinDir locates the PostgreSQL server binaries.
func FindBinDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		dir := filepath.Dir(p)
		if _, err := os.Stat(filepath.Join(dir, "postgres")); err == nil {
			return dir, nil
		}
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		dir := strings.TrimSpace(string(out))
		if _, err := os.Stat(filepath.Join(dir, "initdb")); err == nil {
			return dir, nil
		}
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	sort.Slice(matches, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[i]))))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(matches[j]))))
		return vi > vj
	})
	if len(matches) > 0 {
		return filepath.Dir(matches[0]), nil
	}
	return "", errors.New("PostgreSQL server binaries (initdb, postgres) not found on PATH, via pg_config, or in /usr/lib/postgresql/*/bin; install them (Debian/Ubuntu: apt-get install postgresql)")
}

// Options tune Start.
type Options struct {
	// Settings are extra postgresql.conf lines ("log_destination = 'csvlog'").
	Settings []string
}

// Start initializes and starts a server. Stop it with Stop.
func Start(opts Options) (*Server, error) {
	bin, err := FindBinDir()
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp("", "nplus1-pg-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(root, 0o755); err != nil {
		return nil, err
	}
	cred, uid, gid, err := runAs()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "data")
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	if cred != nil {
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
	}
	s := &Server{Host: "127.0.0.1", BinDir: bin, Dir: dir, done: make(chan struct{}), log: &bytes.Buffer{}}
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", dir, "-U", Superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	if err := s.writeConfig(opts, root, cred != nil, uid, gid); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s.Port = port
	cmd := exec.Command(filepath.Join(bin, "postgres"), "-D", dir, "-p", strconv.Itoa(port))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	cmd.Stdout = &lockedWriter{buf: s.log}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s.cmd = cmd
	go func() { _ = cmd.Wait(); close(s.done) }()
	if err := s.waitReady(30 * time.Second); err != nil {
		s.Stop()
		return nil, err
	}
	if err := s.setup(); err != nil {
		s.Stop()
		return nil, err
	}
	return s, nil
}

type lockedWriter struct {
	mu  sync.Mutex
	buf *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func runAs() (*syscall.Credential, int, int, error) {
	if os.Geteuid() != 0 {
		return nil, 0, 0, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid, gid, nil
	}
	return nil, 0, 0, errors.New("running as root and neither a postgres nor a nobody user exists to run the server")
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (s *Server) writeConfig(opts Options, root string, chown bool, uid, gid int) error {
	caPEM, certPEM, keyPEM, err := makeCerts()
	if err != nil {
		return err
	}
	s.CACert = caPEM
	s.CAFile = filepath.Join(root, "ca.crt")
	if err := os.WriteFile(s.CAFile, caPEM, 0o644); err != nil {
		return err
	}
	files := map[string][]byte{
		"server.crt": certPEM,
		"server.key": keyPEM,
		"pg_hba.conf": []byte(strings.Join([]string{
			"local all all trust",
			"host replication " + Superuser + " 127.0.0.1/32 trust",
			"host all " + Superuser + " 127.0.0.1/32 trust",
			"host all " + UserPassword + " 127.0.0.1/32 password",
			"host all " + UserMD5 + " 127.0.0.1/32 md5",
			"host all " + UserSCRAM + " 127.0.0.1/32 scram-sha-256",
			"host all all ::1/128 trust",
			"",
		}, "\n")),
	}
	conf := []string{
		"listen_addresses = '127.0.0.1'",
		"unix_socket_directories = '" + s.Dir + "'",
		"ssl = on",
		"fsync = off",
		"synchronous_commit = off",
		"full_page_writes = off",
		"max_connections = 200",
		"shared_buffers = 128MB",
		"password_encryption = 'scram-sha-256'",
	}
	conf = append(conf, opts.Settings...)
	f, err := os.OpenFile(filepath.Join(s.Dir, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString("\n" + strings.Join(conf, "\n") + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	for name, data := range files {
		p := filepath.Join(s.Dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			return err
		}
		if chown {
			if err := os.Chown(p, uid, gid); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("postgres exited during startup:\n%s", s.Log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, s.URL(Superuser, "sslmode=disable", "dbname=postgres"))
		if err == nil {
			c.Close(ctx)
			cancel()
			return nil
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("postgres not ready after %s:\n%s", timeout, s.Log())
}

func (s *Server) setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, fmt.Sprintf("postgres://%s@%s/postgres?sslmode=disable", Superuser, s.Addr()))
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	stmts := []string{
		"CREATE DATABASE " + Database,
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", UserPassword, Password),
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", UserSCRAM, Password),
		"SET password_encryption = 'md5'",
		fmt.Sprintf("CREATE ROLE %s LOGIN PASSWORD '%s'", UserMD5, Password),
		fmt.Sprintf("GRANT ALL ON DATABASE %s TO %s, %s, %s", Database, UserPassword, UserSCRAM, UserMD5),
	}
	for _, q := range stmts {
		if _, err := c.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	if err := c.QueryRow(ctx, "SHOW server_version_num").Scan(new(string)); err != nil {
		return err
	}
	var v string
	_ = c.QueryRow(ctx, "SHOW server_version_num").Scan(&v)
	s.Version, _ = strconv.Atoi(v)
	c2, err := pgx.Connect(ctx, s.URL(Superuser))
	if err != nil {
		return err
	}
	defer c2.Close(ctx)
	_, err = c2.Exec(ctx, "GRANT ALL ON SCHEMA public TO PUBLIC")
	return err
}

// Stop shuts the server down (fast mode) and removes its directory.
func (s *Server) Stop() {
	s.once.Do(func() {
		if s.cmd != nil && s.cmd.Process != nil {
			_ = s.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-s.done:
			case <-time.After(20 * time.Second):
				_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
				<-s.done
			}
		}
		_ = os.RemoveAll(filepath.Dir(s.Dir))
	})
}

// makeCerts returns a CA certificate and a server certificate for 127.0.0.1
// and localhost signed by it, all PEM-encoded.
func makeCerts() (caPEM, certPEM, keyPEM []byte, err error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "nplus1 test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, nil, nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	cert, key, err := IssueCert(ca, caKey, "localhost")
	if err != nil {
		return nil, nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), cert, key, nil
}

// IssueCert makes a server certificate for 127.0.0.1, ::1 and host, signed by ca.
func IssueCert(ca *x509.Certificate, caKey *ecdsa.PrivateKey, host string) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), nil
}

// SelfSignedTLS returns a tls.Certificate for 127.0.0.1/localhost and the PEM
// of the CA that signed it, for a proxy's client-facing TLS in tests.
func SelfSignedTLS() (tls.Certificate, []byte, error) {
	caPEM, certPEM, keyPEM, err := makeCerts()
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	return c, caPEM, err
}
