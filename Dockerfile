# The processor image: a static binary on distroless, running as nonroot (65532).
#
#   docker build --build-arg VERSION=v1.2.0 -t ghcr.io/jetfold/jetfold:v1.2.0 .
#
# The build stage runs on the builder's platform and cross-compiles for the target one
# (docker buildx build --platform linux/amd64,linux/arm64 ...): CGO is off, so no C
# toolchain is needed. The golang tag is go.mod's go line; .ci/run checks that they agree,
# and runs this file's `go build` line as it is written (keep it one line, starting with
# `RUN CGO_ENABLED=0`, writing -o /processor) to check that the binary is static and
# carries its version.
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /processor ./cmd/processor

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /processor /processor
USER 65532:65532
# The HTTP listener (/metrics, /healthz, /readyz, /v1): http.listen must name a reachable
# address in a container, such as JETFOLD_HTTP_LISTEN=:8080 (the default is 127.0.0.1:8080).
EXPOSE 8080
ENTRYPOINT ["/processor"]
CMD ["run", "-c", "/etc/jetfold/pipelines.yaml"]
