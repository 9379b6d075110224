# syntax=docker/dockerfile:1
#
# mistral-tap container image: a static, CGO-free binary (the SQLite outbox
# is modernc.org/sqlite, pure Go) on distroless/static, running as nonroot.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) -t mistral-tap .
#   docker run -v $PWD/conf:/etc/mistral-tap:ro -v mistral-tap-state:/var/lib/mistral-tap \
#     -p 8990:8990 -p 9090:9090 mistral-tap
#
# The configuration must set `listen: 0.0.0.0:8990` (the default binds
# loopback only), `state_dir: /var/lib/mistral-tap` and, for probes and
# metrics, `ops.listen: 0.0.0.0:9090`. See docs/deploy/.

FROM golang:1.26 AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod/go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG VERSION=dev
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/mistral-tap ./cmd/mistral-tap
# The state directory must exist owned by nonroot, or a fresh named volume
# would be root-owned and the outbox could not be created.
RUN mkdir -p /out/state && chown 65532:65532 /out/state

# distroless/static: CA certificates (https receivers and upstreams),
# tzdata, /etc/passwd with nonroot, no shell.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mistral-tap /usr/local/bin/mistral-tap
COPY --from=build --chown=65532:65532 /out/state /var/lib/mistral-tap
USER 65532:65532
VOLUME ["/var/lib/mistral-tap"]
# 8990: the proxy clients use instead of Mistral's API. Ops (metrics,
# probes) is on whatever ops.listen says, 9090 in docs/deploy.
EXPOSE 8990 9090
ENTRYPOINT ["mistral-tap", "run", "--config", "/etc/mistral-tap/mistral-tap.yaml"]
