# Multi-stage build of the nplus1 binary. pg_query_go is cgo, so the build
# stage needs a C compiler and the runtime image needs glibc: distroless/cc.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags="-s -w" -o /out/nplus1 ./cmd/nplus1

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/nplus1 /usr/local/bin/nplus1
USER nonroot:nonroot
EXPOSE 6432 9632
ENTRYPOINT ["/usr/local/bin/nplus1"]
CMD ["proxy", "--listen", "0.0.0.0:6432", "--http", "0.0.0.0:9632"]
