# syncbridge production image: the worker, the starter CLI, the RocketMQ
# emulator (for the reference compose stack) and a tiny HTTP probe for
# container healthchecks. Static binaries on distroless, running as nonroot.
#
#   docker build -t syncbridge:local .
#
# Base images are pinned by tag; pin by digest too in your registry
# (`docker buildx imagetools inspect <image>` shows it).

FROM golang:1.26.8 AS build
WORKDIR /src
# Modules first: this layer is reused while only sources change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# -tags nodev leaves out `worker -dev` (embedded Temporal server, Web UI,
# in-memory database): production binaries carry none of it.
RUN CGO_ENABLED=0 go build -tags nodev -trimpath -ldflags="-s -w" -o /out/ \
      ./worker ./starter ./cmd/mqemu ./deploy/healthcheck \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /out/starter /out/mqemu /out/healthcheck /syncbridge/
# Writable state directory for the emulator's volume (owned by nonroot so
# a fresh named volume inherits it).
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/syncbridge/worker"]
