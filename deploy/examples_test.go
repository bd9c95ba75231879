package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/internal/syncbuf"
)

var (
	nplus1Once sync.Once
	nplus1Bin  string
	nplus1Err  error
)

// nplus1Binary builds the nplus1 binary once for the package's tests.
func nplus1Binary(t *testing.T) string {
	t.Helper()
	nplus1Once.Do(func() {
		dir, err := os.MkdirTemp("", "nplus1-deploy-test")
		if err != nil {
			nplus1Err = err
			return
		}
		nplus1Bin = filepath.Join(dir, "nplus1")
		out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", nplus1Bin, "../cmd/nplus1").CombinedOutput()
		if err != nil {
			nplus1Err = &buildError{err: err, out: out}
		}
	})
	if nplus1Err != nil {
		t.Fatalf("build nplus1: %v", nplus1Err)
	}
	return nplus1Bin
}

type buildError struct {
	err error
	out []byte
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + string(e.out) }

func TestMain(m *testing.M) {
	code := m.Run()
	if nplus1Bin != "" {
		os.RemoveAll(filepath.Dir(nplus1Bin))
	}
	os.Exit(code)
}

// proxyEnv returns the NPLUS1_ variables `nplus1 help proxy` lists.
func proxyEnv(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command(nplus1Binary(t), "help", "proxy").CombinedOutput()
	if err != nil {
		t.Fatalf("nplus1 help proxy: %v\n%s", err, out)
	}
	return regexp.MustCompile(`env (NPLUS1_[A-Z0-9_]+)`).FindAllString(string(out), -1)
}

// kubecheck runs tools/kubecheck (the Kubernetes API's types, strict
// decoding) over files.
func kubecheck(t *testing.T, files ...string) (string, error) {
	t.Helper()
	abs := make([]string, len(files))
	for i, f := range files {
		p, err := filepath.Abs(f)
		if err != nil {
			t.Fatal(err)
		}
		abs[i] = p
	}
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), append([]string{"run", "."}, abs...)...)
	cmd.Dir = filepath.Join("..", "tools", "kubecheck")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

const sidecarManifest = "kubernetes/sidecar.yaml"

// TestKubernetesSidecarManifest checks the sidecar example against the
// Kubernetes API's own types (tools/kubecheck: an unknown or misspelt
// field, a value of the wrong type fail it, as a broken copy shows), then
// what the types cannot: the probes are nplus1's /healthz and /readyz on
// its --http port, resources are set, it runs as the image's user, and
// every NPLUS1_ variable is a setting of `nplus1 proxy`.
func TestKubernetesSidecarManifest(t *testing.T) {
	out, err := kubecheck(t, sidecarManifest)
	if err != nil || !strings.Contains(out, "2 objects valid") {
		t.Fatalf("kubecheck %s: %v\n%s", sidecarManifest, err, out)
	}
	manifest, err := os.ReadFile(sidecarManifest)
	if err != nil {
		t.Fatal(err)
	}
	for _, broken := range []struct{ from, to string }{
		{"readinessProbe:", "readynessProbe:"},
		{"containerPort: 9632", "containerPort: nine-six-three-two"},
		{"apiVersion: apps/v1", "apiVersion: apps/v2"},
	} {
		f := filepath.Join(t.TempDir(), "broken.yaml")
		if err := os.WriteFile(f, bytes.Replace(manifest, []byte(broken.from), []byte(broken.to), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := kubecheck(t, f); err == nil {
			t.Errorf("kubecheck passed the manifest with %q for %q:\n%s", broken.to, broken.from, out)
		}
	}

	type probe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port string `yaml:"port"`
		} `yaml:"httpGet"`
	}
	type container struct {
		Name          string `yaml:"name"`
		RestartPolicy string `yaml:"restartPolicy"`
		Env           []struct {
			Name  string `yaml:"name"`
			Value string `yaml:"value"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		Resources struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		SecurityContext struct {
			RunAsNonRoot           bool `yaml:"runAsNonRoot"`
			RunAsUser              int  `yaml:"runAsUser"`
			ReadOnlyRootFilesystem bool `yaml:"readOnlyRootFilesystem"`
		} `yaml:"securityContext"`
	}
	var sidecar *container
	dec := yaml.NewDecoder(bytes.NewReader(manifest))
	for {
		var doc struct {
			Kind string `yaml:"kind"`
			Spec struct {
				Template struct {
					Spec struct {
						InitContainers []container `yaml:"initContainers"`
					} `yaml:"spec"`
				} `yaml:"template"`
			} `yaml:"spec"`
		}
		if err := dec.Decode(&doc); err != nil {
			break
		}
		for i, c := range doc.Spec.Template.Spec.InitContainers {
			if c.Name == "nplus1" {
				sidecar = &doc.Spec.Template.Spec.InitContainers[i]
			}
		}
	}
	if sidecar == nil {
		t.Fatal("no nplus1 init container in the Deployment")
	}
	if sidecar.RestartPolicy != "Always" {
		t.Errorf("restartPolicy %q, want Always (a native sidecar)", sidecar.RestartPolicy)
	}
	env := map[string]string{}
	known := proxyEnv(t)
	for _, e := range sidecar.Env {
		env[e.Name] = e.Value
		if strings.HasPrefix(e.Name, "NPLUS1_") && !slices.Contains(known, "env "+e.Name) {
			t.Errorf("%s is not a setting of nplus1 proxy (nplus1 help proxy)", e.Name)
		}
	}
	_, httpPort, err := net.SplitHostPort(env["NPLUS1_HTTP"])
	if err != nil || env["NPLUS1_UPSTREAM"] == "" || !strings.HasPrefix(env["NPLUS1_LISTEN"], "127.0.0.1:") {
		t.Fatalf("env %v: want NPLUS1_HTTP host:port, NPLUS1_UPSTREAM, NPLUS1_LISTEN on loopback", env)
	}
	if len(sidecar.Ports) != 1 || strconv.Itoa(sidecar.Ports[0].ContainerPort) != httpPort {
		t.Errorf("ports %+v, want the --http port %s", sidecar.Ports, httpPort)
	}
	var probes struct {
		StartupProbe   probe `yaml:"startupProbe"`
		LivenessProbe  probe `yaml:"livenessProbe"`
		ReadinessProbe probe `yaml:"readinessProbe"`
	}
	raw, _ := yaml.Marshal(sidecarNode(t, manifest))
	if err := yaml.Unmarshal(raw, &probes); err != nil {
		t.Fatal(err)
	}
	for name, p := range map[string]struct {
		got  probe
		path string
	}{"startupProbe": {probes.StartupProbe, "/healthz"}, "livenessProbe": {probes.LivenessProbe, "/healthz"}, "readinessProbe": {probes.ReadinessProbe, "/readyz"}} {
		if p.got.HTTPGet.Path != p.path || p.got.HTTPGet.Port != sidecar.Ports[0].Name {
			t.Errorf("%s %+v, want GET %s on port %s", name, p.got.HTTPGet, p.path, sidecar.Ports[0].Name)
		}
	}
	if sidecar.Resources.Requests["cpu"] == "" || sidecar.Resources.Requests["memory"] == "" || sidecar.Resources.Limits["memory"] == "" {
		t.Errorf("resources %+v: want CPU and memory requests and a memory limit", sidecar.Resources)
	}
	sc := sidecar.SecurityContext
	if !sc.RunAsNonRoot || sc.RunAsUser != 10001 || !sc.ReadOnlyRootFilesystem {
		t.Errorf("securityContext %+v: want the image's user 10001, non-root, a read-only root", sc)
	}
}

// sidecarNode is the nplus1 init container of the manifest as a YAML node.
func sidecarNode(t *testing.T, manifest []byte) any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(manifest))
	for {
		var doc map[string]any
		if err := dec.Decode(&doc); err != nil {
			t.Fatal("no nplus1 init container")
		}
		spec, _ := doc["spec"].(map[string]any)
		tmpl, _ := spec["template"].(map[string]any)
		pod, _ := tmpl["spec"].(map[string]any)
		inits, _ := pod["initContainers"].([]any)
		for _, c := range inits {
			if m, ok := c.(map[string]any); ok && m["name"] == "nplus1" {
				return m
			}
		}
	}
}

const composeFile = "compose/docker-compose.yml"

type composeService struct {
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Volumes     []string          `yaml:"volumes"`
	Build       *struct {
		Context    string `yaml:"context"`
		Dockerfile string `yaml:"dockerfile"`
	} `yaml:"build"`
}

func readCompose(t *testing.T) map[string]composeService {
	t.Helper()
	b, err := os.ReadFile(composeFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Services map[string]composeService `yaml:"services"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(false)
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("%s: %v", composeFile, err)
	}
	return doc.Services
}

// TestComposeExample checks the compose example: the services of the
// sidecar stack, images pinned, every file it mounts or builds from
// present, nplus1's flags real (it runs `nplus1 proxy` with them against a
// port that is not there, which must get as far as listening), and the
// addresses the services use of each other consistent.
func TestComposeExample(t *testing.T) {
	services := readCompose(t)
	for _, name := range []string{"postgres", "nplus1", "app", "jaeger", "prometheus", "grafana"} {
		if _, ok := services[name]; !ok {
			t.Errorf("%s: no service %s", composeFile, name)
		}
	}
	for name, s := range services {
		if s.Build == nil && (!strings.Contains(s.Image, ":") || strings.HasSuffix(s.Image, ":latest")) {
			t.Errorf("service %s: image %q is not pinned to a version", name, s.Image)
		}
		if s.Build != nil {
			if _, err := os.Stat(filepath.Join("compose", s.Build.Context, s.Build.Dockerfile)); err != nil {
				t.Errorf("service %s builds from %v", name, err)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if _, err := os.Stat(filepath.Join("compose", src)); err != nil {
				t.Errorf("service %s mounts %v", name, err)
			}
		}
	}
	flags := map[string]string{}
	np := services["nplus1"]
	for _, a := range np.Command[1:] {
		k, v, ok := strings.Cut(a, "=")
		if !ok || !strings.HasPrefix(k, "--") {
			t.Fatalf("nplus1 command %q: want --flag=value", a)
		}
		flags[k] = v
	}
	if flags["--otlp-endpoint"] != "http://jaeger:4318" || flags["--upstream"] != "postgres:5432" {
		t.Errorf("nplus1 flags %v: want the upstream postgres:5432 and the OTLP endpoint http://jaeger:4318", flags)
	}
	_, listenPort, _ := net.SplitHostPort(flags["--listen"])
	u, err := url.Parse(services["app"].Environment["DATABASE_URL"])
	if err != nil || u.Hostname() != "nplus1" || u.Port() != listenPort {
		t.Errorf("app DATABASE_URL %q: want the nplus1 service on its --listen port %s", services["app"].Environment["DATABASE_URL"], listenPort)
	}
	prom, err := os.ReadFile(filepath.Join("compose", strings.Split(services["prometheus"].Volumes[0], ":")[0], "prometheus.yml"))
	if err != nil {
		t.Fatal(err)
	}
	_, httpPort, _ := net.SplitHostPort(flags["--http"])
	if !bytes.Contains(prom, []byte(`"nplus1:`+httpPort+`"`)) {
		t.Errorf("Prometheus does not scrape nplus1:%s", httpPort)
	}

	// The flags are nplus1's: it starts with them (on loopback ports).
	args := []string{"proxy"}
	for k, v := range flags {
		switch k {
		case "--listen", "--http":
			v = "127.0.0.1:0"
		case "--upstream":
			v = "127.0.0.1:1"
		case "--otlp-endpoint":
			v = "http://127.0.0.1:1"
		}
		args = append(args, k+"="+v)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nplus1Binary(t), args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	listening, lines := false, []string{}
	for sc := bufio.NewScanner(stderr); !listening && sc.Scan(); {
		lines = append(lines, sc.Text())
		listening = strings.Contains(sc.Text(), "msg=listening component=proxy")
	}
	if !listening {
		t.Errorf("nplus1 %v did not start:\n%s", args, strings.Join(lines, "\n"))
	}
}

// TestComposeAppFindsATracedNPlusOne runs the compose example's stand-in
// application (compose/app/loop.sh, psql) once through the real proxy to a
// real PostgreSQL: the proxy reports its N+1 on the trace the script
// printed.
func TestComposeAppFindsATracedNPlusOne(t *testing.T) {
	if _, err := exec.LookPath("psql"); err != nil {
		t.Fatal("psql not found: install the Debian package postgresql-client (scripts/deps.sh does)")
	}
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	proxy := exec.Command(nplus1Binary(t), "proxy", "--listen", listen, "--upstream", pg.Addr(), "--http", httpAddr)
	logs := &syncbuf.Buffer{}
	proxy.Stderr = logs
	if err := proxy.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { proxy.Process.Kill(); proxy.Wait() }()

	app := exec.Command("bash", "compose/app/loop.sh", "1")
	app.Env = append(os.Environ(), "DATABASE_URL="+pgtest.URLFor(listen, pgtest.Superuser, "application_name=shop-api"))
	out, err := app.CombinedOutput()
	if err != nil {
		t.Fatalf("loop.sh: %v\n%s\nproxy:\n%s", err, out, logs)
	}
	m := regexp.MustCompile(`request: trace ([0-9a-f]{32}), 10 lookups`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("loop.sh printed %q, want a request with its trace id and 10 lookups", out)
	}
	var found []struct {
		TraceID  string `json:"trace_id"`
		Query    string `json:"query"`
		Count    int    `json:"count"`
		Evidence struct {
			Kind string `json:"kind"`
		} `json:"evidence"`
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		res, err := http.Get("http://" + httpAddr + "/api/findings?kind=n_plus_one")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(res.Body).Decode(&found)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(found) > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The source and the lookups run in two psql sessions, joined by the
	// trace: on a loaded machine the second psql may start more than the
	// idle gap later, and the loop is then reported on repetition (its
	// trace still makes it one request), so either evidence is right.
	if len(found) != 1 || found[0].TraceID != string(m[1]) || found[0].Count != 10 ||
		found[0].Query != "SELECT name FROM customers WHERE id = $1" ||
		(found[0].Evidence.Kind != "data_flow" && found[0].Evidence.Kind != "repetition") {
		t.Errorf("findings %+v, want the loop of 10 lookups on trace %s\nproxy:\n%s", found, m[1], logs)
	}
}
