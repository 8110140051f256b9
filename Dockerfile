# syntax=docker/dockerfile:1
#
# sidelog's container image: a static binary on distroless/static, running as
# the unprivileged user 65532, with nothing writable but data_dir. Run it with
# a read-only root filesystem.
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse HEAD) -t sidelog:dev .
#
# The binary is built by scripts/build.sh, as release binaries are: static
# (CGO_ENABLED=0), stamped with version, commit and build date.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION} AS build
WORKDIR /src
# Dependencies first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=unknown
ARG DATE=""
# Set by BuildKit to the platform being built (docker buildx --platform).
ARG TARGETOS=linux
ARG TARGETARCH=amd64
RUN VERSION="${VERSION}" COMMIT="${COMMIT}" DATE="${DATE}" PLATFORMS="${TARGETOS}/${TARGETARCH}" \
      bash scripts/build.sh /out \
 && mv "/out/sidelog-${TARGETOS}-${TARGETARCH}" /out/sidelog \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/sidelog /usr/local/bin/sidelog
# data_dir, owned by the runtime user, mode 0700. Mount a volume here
# (emptyDir in a sidecar, hostPath in a DaemonSet): it is the only place the
# agent writes.
COPY --from=build --chown=65532:65532 --chmod=0700 /out/data /var/lib/sidelog
USER 65532:65532
# The HTTP API (metrics, probes): set api.address to 0.0.0.0:2020 in the
# config to reach it from outside the container.
EXPOSE 2020
ENTRYPOINT ["/usr/local/bin/sidelog"]
CMD ["run", "-c", "/etc/sidelog/sidelog.yaml"]
