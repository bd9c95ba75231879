# Multi-stage build of the nplus1 binary. pg_query_go is cgo, so the build
# stage needs a C compiler and the runtime image needs glibc: a slim Debian of
# the same release as the build image, with an unprivileged user.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/nplus1 ./cmd/nplus1

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home nplus1
COPY --from=build /out/nplus1 /usr/local/bin/nplus1
USER 10001:10001
EXPOSE 6432 9632
ENTRYPOINT ["/usr/local/bin/nplus1"]
CMD ["proxy", "--listen", "0.0.0.0:6432", "--http", "0.0.0.0:9632"]
