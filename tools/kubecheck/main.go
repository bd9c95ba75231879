// Command kubecheck checks Kubernetes manifests against the Kubernetes API's
// own types: every document of every file given must be a kind it knows,
// decode strictly (an unknown or misspelt field, or a value of the wrong
// type, is an error) and name its object. The deploy package's tests run it
// over the sidecar example; it is a module of its own so that the Kubernetes
// API modules stay out of nplus1's go.mod.
//
//	go run . FILE...
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// kinds are the objects the examples may hold, by apiVersion and kind.
var kinds = map[string]func() any{
	"apps/v1/Deployment":            func() any { return &appsv1.Deployment{} },
	"apps/v1/StatefulSet":           func() any { return &appsv1.StatefulSet{} },
	"v1/Service":                    func() any { return &corev1.Service{} },
	"v1/ConfigMap":                  func() any { return &corev1.ConfigMap{} },
	"v1/Secret":                     func() any { return &corev1.Secret{} },
	"v1/ServiceAccount":             func() any { return &corev1.ServiceAccount{} },
	"policy/v1/PodDisruptionBudget": func() any { return &policyv1.PodDisruptionBudget{} },
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kubecheck FILE...")
		os.Exit(2)
	}
	failed := false
	for _, file := range os.Args[1:] {
		n, err := check(file)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
			failed = true
			continue
		}
		fmt.Printf("%s: %d objects valid\n", file, n)
	}
	if failed {
		os.Exit(1)
	}
}

// check checks every document of file and returns how many it holds.
func check(file string) (int, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	r := yamlutil.NewYAMLReader(bufioReader(data))
	n := 0
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		n++
		if err := checkDoc(doc); err != nil {
			return n, fmt.Errorf("document %d: %w", n, err)
		}
	}
}

// checkDoc decodes one document strictly into its kind's type.
func checkDoc(doc []byte) error {
	var u unstructured.Unstructured
	if err := yaml.Unmarshal(doc, &u.Object); err != nil {
		return err
	}
	key := u.GetAPIVersion() + "/" + u.GetKind()
	newObj, ok := kinds[key]
	if !ok {
		return fmt.Errorf("apiVersion %q kind %q: not a kind this check knows", u.GetAPIVersion(), u.GetKind())
	}
	if u.GetName() == "" {
		return fmt.Errorf("%s without metadata.name", key)
	}
	if err := yaml.UnmarshalStrict(doc, newObj()); err != nil {
		return fmt.Errorf("%s %s: %w", key, u.GetName(), err)
	}
	return nil
}

func bufioReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }
