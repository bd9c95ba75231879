package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// nodeDir holds package.json, .npmrc and cases.js; npm installs the pinned
// packages into its node_modules (ignored by git, kept between runs).
const nodeDir = "node"

// installStamp, inside node_modules, records the hash of the package.json
// and .npmrc that the installed packages came from.
const installStamp = ".nplus1-e2e-installed"

var (
	nodeOnce sync.Once
	nodeErr  error
)

// ensureNode checks for node and npm and installs the Node packages when
// node_modules is missing or package.json changed since it was installed. A
// missing node or npm fails the test: the corpus is not whole without them.
func ensureNode(t *testing.T) {
	t.Helper()
	nodeOnce.Do(func() { nodeErr = installNode() })
	if nodeErr != nil {
		t.Fatal(nodeErr)
	}
}

func installNode() error {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found on PATH: the Node end-to-end cases need Node.js and npm; install them (Debian/Ubuntu: apt-get install nodejs npm)", tool)
		}
	}
	sum := sha256.New()
	for _, name := range []string{"package.json", ".npmrc"} {
		b, err := os.ReadFile(filepath.Join(nodeDir, name))
		if err != nil {
			return err
		}
		sum.Write(b)
	}
	stamp := hex.EncodeToString(sum.Sum(nil))
	stampPath := filepath.Join(nodeDir, "node_modules", installStamp)
	if b, err := os.ReadFile(stampPath); err == nil && string(b) == stamp {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-audit", "--no-fund")
	cmd.Dir = nodeDir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("npm install in e2e/%s: %v\n%s", nodeDir, err, out)
	}
	return os.WriteFile(stampPath, []byte(stamp), 0o644)
}

// runNode runs one case of cases.js against the proxy, with env ("K=V")
// added to its environment.
func runNode(ctx context.Context, name string, env ...string) error {
	cmd := exec.CommandContext(ctx, "node", "cases.js", name)
	cmd.Dir = nodeDir
	cmd.Env = append(append(os.Environ(), "NPLUS1_E2E_DATABASE_URL="+h.nodeURL()), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("node cases.js %s: %v\n%s", name, err, out.String())
	}
	return nil
}

// nodeCase is a case of cases.js and its truth.
type nodeCase struct {
	name  string
	want  []want
	known *[]want
	note  string
	paced bool
}

// nodeCases are the corpus cases of Node's pg and Sequelize; the code is in
// node/cases.js under the same names.
func nodeCases() []corpusCase {
	ncs := []nodeCase{
		{name: "pg/orders_with_user/n+1", want: []want{nPlusOne("users", "orders")}},
		{name: "pg/orders_with_user/fixed_any"},
		{name: "pg/orders_with_user/fixed_join"},
		{name: "pg/orders_with_user/n+1_inlined_literals", want: []want{nPlusOne("users", "orders")}},
		{name: "pg/orders_with_user/n+1_named_statement", want: []want{nPlusOne("users", "orders")}},
		{name: "pg/orders_with_user/n+1_promise_all", want: []want{nPlusOne("users", "orders")}},
		{name: "pg/orders_with_user/n+1_3ms_work", want: []want{nPlusOne("users", "orders")}},
		{name: "pg/orders_with_user/loop_of_4"},
		{name: "pg/orders_with_user/n+1_via_pool", want: []want{nPlusOne("users", "orders")}},
		{name: "pg/invoice/nested_n+1", want: []want{nPlusOne("order_items", "orders"), nPlusOne("products", "order_items")}},
		{name: "pg/invoice/fixed_join"},
		{name: "pg/current_user/duplicate", want: []want{duplicate("users")}},
		{name: "pg/current_user/fixed"},
		{name: "pg/export_items/unpaginated", want: []want{unpaginated("order_items")}},
		{name: "pg/export_items/fixed_limit_50_offset", want: []want{deepOffset("order_items")}},
		{name: "pg/product/select_star", want: []want{selectStar("products")}},
		{name: "pg/product/fixed_named_columns"},
		{name: "pg/user_lookup/one_per_request_150ms_apart", paced: true},
		{name: "pg/health/select_1"},

		{name: "sequelize/orders_with_user/n+1_get_user", want: []want{nPlusOne("users", "orders")}},
		{name: "sequelize/orders_with_user/fixed_include"},
		{name: "sequelize/orders_with_items/n+1_get_items", want: []want{nPlusOne("order_items", "orders")}},
		{name: "sequelize/orders_with_items/fixed_include_separate"},
		{name: "sequelize/invoice/nested_n+1", want: []want{nPlusOne("order_items", "orders"), nPlusOne("products", "order_items")}},
		{name: "sequelize/invoice/fixed_nested_include"},
		{name: "sequelize/current_user/duplicate", want: []want{duplicate("users")}},
		{name: "sequelize/current_user/fixed"},
		{name: "sequelize/export_items/unpaginated", want: []want{unpaginated("order_items")}},
		{name: "sequelize/export_items/fixed_limit_50_offset", want: []want{deepOffset("order_items")}},
		{name: "sequelize/product/select_star_raw_query", want: []want{selectStar("products")}},
		{name: "sequelize/product/fixed_find_by_pk"},
		{name: "sequelize/stats/count"},
		{name: "sequelize/health/authenticate"},
	}
	return nodeCorpus(ncs)
}

// nodeCorpus makes corpus cases of Node cases, run by name through cases.js.
func nodeCorpus(ncs []nodeCase) []corpusCase {
	var cs []corpusCase
	for _, nc := range ncs {
		cs = append(cs, corpusCase{
			Name: "node-" + nc.name, Want: nc.want, Known: nc.known, Note: nc.note, Paced: nc.paced,
			Run: func(ctx context.Context) error { return runNode(ctx, nc.name) },
		})
	}
	return cs
}

// TestNodeCaseList checks that cases.js names the cases of nodeCases,
// nodePatternCases, nodeConcurrencyCases, nodeLostUpdateCases and
// nodeMissingIndexCases.
func TestNodeCaseList(t *testing.T) {
	ensureNode(t)
	cmd := exec.Command("node", "cases.js", "--list")
	cmd.Dir = nodeDir
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("node cases.js --list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("node cases.js --list: %v", err)
	}
	var got []string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node cases.js --list: %v in %q", err, out)
	}
	var want []string
	for _, c := range slices.Concat(nodeCases(), nodePatternCases(), nodeConcurrencyCases(), nodeLostUpdateCases(), nodeMissingIndexCases()) {
		want = append(want, c.Name[len("node-"):])
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("cases.js has %v,\nnodeCases has %v", got, want)
	}
}
