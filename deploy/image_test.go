package deploy

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nplus1/nplus1/internal/syncbuf"

	"github.com/jackc/pgx/v5"

	"github.com/nplus1/nplus1/internal/pgtest"
	"github.com/nplus1/nplus1/internal/shop"
)

// imageTag is the image the tests build, in container storage of their own.
const imageTag = "localhost/nplus1:test"

// image is the image built by scripts/image.sh, in a storage of its own.
type image struct {
	root    string // buildah --root
	archive string // the OCI archive
	binary  string // the static binary
	log     string // what the script printed
}

// buildah runs buildah on the image's storage.
func (im *image) buildah(args ...string) *exec.Cmd {
	return exec.Command("buildah", append([]string{"--root", im.root, "--runroot", filepath.Join(im.root, "run"), "--storage-driver", "vfs"}, args...)...)
}

// buildImage runs scripts/image.sh. A missing buildah is a failure: run
// scripts/deps.sh (scripts/test.sh does), which installs it.
func buildImage(t *testing.T) *image {
	t.Helper()
	if _, err := exec.LookPath("buildah"); err != nil {
		t.Fatal("buildah not found: install the Debian package buildah (scripts/deps.sh does)")
	}
	dir := t.TempDir()
	im := &image{root: filepath.Join(dir, "storage"), archive: filepath.Join(dir, "nplus1.oci.tar")}
	out := filepath.Join(dir, "bin")
	cmd := exec.Command("bash", filepath.Join("..", "scripts", "image.sh"), "--tag", imageTag, "--root", im.root,
		"--archive", im.archive, "--out", out)
	b, err := cmd.CombinedOutput()
	im.log = string(b)
	if err != nil {
		t.Fatalf("scripts/image.sh: %v\n%s", err, b)
	}
	im.binary = filepath.Join(out, "nplus1")
	t.Cleanup(func() {
		// vfs layers are plain directories, but buildah may leave a
		// container's mounts behind.
		rm := im.buildah("rm", "--all")
		rm.Run()
	})
	return im
}

// ociConfig is what the tests read of an image's configuration.
type ociConfig struct {
	Config struct {
		User         string              `json:"User"`
		Entrypoint   []string            `json:"Entrypoint"`
		Cmd          []string            `json:"Cmd"`
		ExposedPorts map[string]struct{} `json:"ExposedPorts"`
		WorkingDir   string              `json:"WorkingDir"`
	} `json:"config"`
}

// readArchive reads an OCI archive: the image's configuration and the
// regular files of its layers, by path, with their mode.
func readArchive(t *testing.T, path string) (ociConfig, map[string]os.FileMode) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blobs := map[string][]byte{}
	var index []byte
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		if name == "index.json" {
			index = b
		}
		if d, ok := strings.CutPrefix(name, "blobs/sha256/"); ok {
			blobs["sha256:"+d] = b
		}
	}
	type descriptor struct {
		Digest string `json:"digest"`
	}
	var idx struct{ Manifests []descriptor }
	if err := json.Unmarshal(index, &idx); err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index.json: %v, %d manifests: %s", err, len(idx.Manifests), index)
	}
	var man struct {
		Config descriptor
		Layers []descriptor
	}
	if err := json.Unmarshal(blobs[idx.Manifests[0].Digest], &man); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	var cfg ociConfig
	if err := json.Unmarshal(blobs[man.Config.Digest], &cfg); err != nil {
		t.Fatalf("config: %v", err)
	}
	files := map[string]os.FileMode{}
	for _, l := range man.Layers {
		zr, err := gzip.NewReader(bytes.NewReader(blobs[l.Digest]))
		if err != nil {
			t.Fatalf("layer %s: %v", l.Digest, err)
		}
		lr := tar.NewReader(zr)
		for {
			h, err := lr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("layer %s: %v", l.Digest, err)
			}
			if h.Typeflag == tar.TypeReg {
				files[strings.TrimPrefix(h.Name, "./")] = h.FileInfo().Mode()
			}
		}
	}
	return cfg, files
}

// dockerfile is what the tests read of the Dockerfile: the go build
// command of its build stage and the final stage's instructions.
func dockerfile(t *testing.T) (build string, final map[string]string, copies []string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.ReplaceAll(string(b), "\\\n", " ")
	final = map[string]string{}
	stage := ""
	for line := range strings.Lines(text) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(line, " ")
		switch {
		case instr == "FROM":
			stage = rest
		case instr == "RUN" && strings.Contains(rest, "go build"):
			build = rest
		case stage == "scratch" && instr == "COPY":
			copies = append(copies, rest)
		case stage == "scratch":
			final[instr] = rest
		}
	}
	return build, final, copies
}

// goBuildFlags are the flags of a go build command line, normalized.
func goBuildFlags(cmd string) string {
	cmd = strings.Join(strings.Fields(cmd), " ")
	i := strings.Index(cmd, "go build")
	j := strings.Index(cmd, " -o ")
	if i < 0 || j < i {
		return ""
	}
	env := ""
	if strings.Contains(cmd[:i], "CGO_ENABLED=1") {
		env = "CGO_ENABLED=1 "
	}
	return env + cmd[i:j]
}

// TestImageLayout builds the image with scripts/image.sh and checks what
// is in it: a static binary and the CA certificates, nothing else; an
// unprivileged user; the entrypoint, command and ports; and that the
// Dockerfile, for machines with a registry, builds the same.
func TestImageLayout(t *testing.T) {
	im := buildImage(t)
	t.Logf("scripts/image.sh:\n%s", im.log)
	if out, err := exec.Command("readelf", "-l", im.binary).CombinedOutput(); err != nil || bytes.Contains(out, []byte("program interpreter")) {
		t.Errorf("the binary is not static (readelf: %v):\n%s", err, out)
	}
	cfg, files := readArchive(t, im.archive)
	want := map[string]os.FileMode{"usr/local/bin/nplus1": 0o755, "etc/ssl/certs/ca-certificates.crt": 0o644}
	for p, mode := range want {
		if got, ok := files[p]; !ok || got.Perm() != mode {
			t.Errorf("image file %s: mode %v (present %v), want %v", p, got.Perm(), ok, mode)
		}
	}
	for p := range files {
		if _, ok := want[p]; !ok {
			t.Errorf("image holds %s, want only %v", p, slices.Sorted(maps.Keys(want)))
		}
	}
	c := cfg.Config
	if c.User != "10001:10001" {
		t.Errorf("user %q, want 10001:10001 (unprivileged, numeric: scratch has no /etc/passwd)", c.User)
	}
	if !slices.Equal(c.Entrypoint, []string{"/usr/local/bin/nplus1"}) ||
		!slices.Equal(c.Cmd, []string{"proxy", "--listen", "0.0.0.0:6432", "--http", "0.0.0.0:9632"}) {
		t.Errorf("entrypoint %q cmd %q", c.Entrypoint, c.Cmd)
	}
	if _, ok := c.ExposedPorts["6432/tcp"]; !ok || len(c.ExposedPorts) != 2 {
		t.Errorf("exposed ports %v, want 6432/tcp and 9632/tcp", c.ExposedPorts)
	}

	// The Dockerfile: the same build flags, the same final image.
	build, final, copies := dockerfile(t)
	script, err := os.ReadFile(filepath.Join("..", "scripts", "image.sh"))
	if err != nil {
		t.Fatal(err)
	}
	scriptBuild := regexp.MustCompile(`(?s)CGO_ENABLED=1 go build.*?-o "\$bin"`).Find(bytes.ReplaceAll(script, []byte("\\\n"), nil))
	if got, want := goBuildFlags(build), goBuildFlags(string(scriptBuild)); got == "" || got != want {
		t.Errorf("Dockerfile builds with %q, scripts/image.sh with %q: keep them the same", got, want)
	}
	for instr, want := range map[string]string{
		"USER":       c.User,
		"ENTRYPOINT": mustJSON(c.Entrypoint),
		"CMD":        mustJSON(c.Cmd),
		"EXPOSE":     "6432 9632",
		"WORKDIR":    c.WorkingDir,
	} {
		if got := final[instr]; strings.ReplaceAll(got, `", "`, `","`) != want {
			t.Errorf("Dockerfile %s %s, the image's is %s", instr, got, want)
		}
	}
	for _, p := range []string{"/usr/local/bin/nplus1", "/etc/ssl/certs/ca-certificates.crt"} {
		if !slices.ContainsFunc(copies, func(c string) bool { return strings.HasSuffix(c, " "+p) }) {
			t.Errorf("Dockerfile does not COPY %s into the final stage: %q", p, copies)
		}
	}
	if len(copies) != 2 || final["FROM"] != "" {
		t.Errorf("Dockerfile's final stage copies %q; want the binary and the CA certificates only", copies)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// procOf finds the process whose command line holds arg, as /proc shows
// it: the proxy inside the container.
func procOf(arg string) (pid int, status string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmdline, []byte("\x00"+arg+"\x00")) || !bytes.HasSuffix(bytes.SplitN(cmdline, []byte{0}, 2)[0], []byte("/nplus1")) {
			continue
		}
		st, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "status"))
		return n, string(st)
	}
	return 0, ""
}

// TestImageFindsAnNPlusOne runs the image (buildah run, chroot isolation,
// the host's network) in front of a real PostgreSQL, as a sidecar runs:
// it waits for /readyz, runs the shop's N+1 through it, and reads the
// finding from /api/findings; the proxy runs as the image's unprivileged
// user and stops on SIGTERM.
func TestImageFindsAnNPlusOne(t *testing.T) {
	im := buildImage(t)
	pg, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatalf("start PostgreSQL: %v", err)
	}
	t.Cleanup(pg.Stop)

	from := im.buildah("from", "--quiet", imageTag)
	ctrName, err := from.Output()
	if err != nil {
		t.Fatalf("buildah from: %v", err)
	}
	ctr := strings.TrimSpace(string(ctrName))
	listen := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	logs := &syncbuf.Buffer{}
	begin := time.Now()
	run := im.buildah("run", "--isolation", "chroot", "--network", "host", ctr, "--",
		"/usr/local/bin/nplus1", "proxy", "--listen", listen, "--upstream", pg.Addr(), "--http", httpAddr, "--log-format", "json")
	run.Stdout, run.Stderr = logs, logs
	run.WaitDelay = 5 * time.Second // a process left in the container may hold the output open
	if err := run.Start(); err != nil {
		t.Fatalf("buildah run: %v", err)
	}
	exited := make(chan struct{}) // closed when buildah run has returned runErr
	var runErr error
	go func() { runErr = run.Wait(); close(exited) }()
	defer func() {
		if pid, _ := procOf(listen); pid != 0 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		run.Process.Kill()
		<-exited
	}()

	// Ready: /readyz answers 200 once the upstream accepts connections.
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		res, err := client.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-exited:
			t.Fatalf("the container exited before it was ready: %v\n%s", runErr, logs)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(begin) > 60*time.Second {
			t.Fatalf("not ready after 60s:\n%s", logs)
		}
	}
	t.Logf("ready %v after buildah run", time.Since(begin).Round(time.Millisecond))

	pid, status := procOf(listen)
	if pid == 0 {
		t.Fatal("the proxy's process is not to be found in /proc")
	}
	if !regexp.MustCompile(`(?m)^Uid:\s+10001\s+10001\s+10001\s+10001$`).MatchString(status) {
		t.Errorf("the proxy runs as\n%s\nwant uid 10001 (the image's user)", grepLine(status, "Uid:"))
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.URLFor(listen, pgtest.Superuser, "application_name=image-test"))
	if err != nil {
		t.Fatalf("connect through the container: %v\n%s", err, logs)
	}
	defer conn.Close(context.Background())
	if err := shop.Load(ctx, conn); err != nil {
		t.Fatalf("load the shop: %v", err)
	}
	time.Sleep(shop.Pause)
	if err := shop.Scenarios()[0].Bad(ctx, conn); err != nil {
		t.Fatalf("the N+1: %v", err)
	}
	var found []map[string]any
	for deadline := time.Now().Add(20 * time.Second); ; {
		res, err := client.Get("http://" + httpAddr + "/api/findings?kind=n_plus_one")
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
	if len(found) != 1 || found[0]["query"] != "SELECT name, email FROM users WHERE id = $1" {
		t.Fatalf("findings %v, want the shop's N+1 over users\n%s", found, logs)
	}

	// SIGTERM stops it, as a container runtime stops a container.
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		if runErr != nil {
			t.Errorf("buildah run: %v after SIGTERM, want a clean exit\n%s", runErr, logs)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("still running 15s after SIGTERM\n%s", logs)
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("no stopped line:\n%s", logs)
	}
}

// grepLine returns the line of text that starts with prefix.
func grepLine(text, prefix string) string {
	for line := range strings.Lines(text) {
		if strings.HasPrefix(line, prefix) {
			return strings.TrimSpace(line)
		}
	}
	return ""
}
