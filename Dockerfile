# The nplus1 image, for machines with a registry. scripts/image.sh builds the
# same image with buildah from a binary built here, with no base image to pull,
# and deploy/image_test.go runs it; a test holds this file to the same build
# flags and configuration.
#
# The binary is fully static: pg_query_go is cgo, and glibc is linked
# statically, with Go's own DNS resolver and user lookup (netgo, osusergo),
# since a static glibc cannot load NSS modules; grpcnotrace leaves out gRPC's
# debug pages (4 MB), which nplus1 never serves. So the image is scratch: the
# binary, the CA certificates (for TLS to the upstream and the OTLP
# endpoint), and an unprivileged user.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -tags netgo,osusergo,grpcnotrace \
	-ldflags '-s -w -linkmode external -extldflags "-static"' \
	-o /out/nplus1 ./cmd/nplus1

FROM scratch
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build --chmod=0755 /out/nplus1 /usr/local/bin/nplus1
USER 10001:10001
WORKDIR /
EXPOSE 6432 9632
ENTRYPOINT ["/usr/local/bin/nplus1"]
CMD ["proxy", "--listen", "0.0.0.0:6432", "--http", "0.0.0.0:9632"]
