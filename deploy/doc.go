// Package deploy holds no code: it is how nplus1 is run next to an
// application — the image (built by scripts/image.sh, or by the Dockerfile
// on machines with a registry), a docker compose example and a Kubernetes
// sidecar manifest (see README.md). Its tests build the image and run it
// in front of a real PostgreSQL, and check the examples.
package deploy
