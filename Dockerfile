# syntax=docker/dockerfile:1
# sagegate gateway image. Build from the repository root:
#   docker build -t sagegate .                                # native architecture
#   docker buildx build --platform linux/arm64 -t sagegate .  # for Fargate ARM64 (QEMU or an ARM runner)
# The builder and the runtime share Debian 12 (bookworm), so the binary's glibc matches at run time.

FROM rust:1.95-bookworm AS build
# Set by BuildKit; keys the target cache, so arm64 and amd64 builds do not overwrite each other.
ARG TARGETPLATFORM
WORKDIR /src
COPY . .
# Cache mounts keep the crates.io index, sources and compiled dependencies between builds; the
# binary is copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,id=sagegate-target-${TARGETPLATFORM},target=/src/target,sharing=locked \
    cargo build --release --locked -p sagegate \
 && install -D -m 0755 target/release/sagegate /out/sagegate
# A config that does not load fails the build, not the deployment: with the keys file baked in
# below, and with the demo keys the local stack mounts.
RUN /out/sagegate check-config --config config/gateway.yaml --keys config/keys.empty.yaml \
 && /out/sagegate check-config --config config/gateway.yaml --keys config/keys.yaml

# distroless/cc: glibc, libgcc, CA certificates (for SageMaker and S3 over TLS); no shell, no curl.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sagegate /usr/local/bin/sagegate
COPY config/gateway.yaml /etc/sagegate/gateway.yaml
# The default keys source holds no key: every route with api_key_required answers 403 until keys are
# configured (SAGEGATE_KEYS, or a file mounted here). The public demo key (config/keys.yaml) is for
# the local stack only, which mounts ./config over /etc/sagegate.
COPY config/keys.empty.yaml /etc/sagegate/keys.yaml
# Paths through the environment, not CMD flags: a flag would override SAGEGATE_KEYS=s3://... that the
# deployment sets, while an environment variable set at run time replaces these.
ENV SAGEGATE_CONFIG=/etc/sagegate/gateway.yaml \
    SAGEGATE_KEYS=/etc/sagegate/keys.yaml
# No transparent huge pages for the process, whatever the host's THP setting: with many connections
# each touching a few pages of memory, huge pages inflate it (bench/RESULTS.md §10).
ENV MIMALLOC_ALLOW_THP=0
# The gateway writes nothing to disk, so it runs as nobody-like 65532 on a read-only root filesystem.
USER 65532:65532
EXPOSE 8080
# SIGTERM starts the drain (/healthz turns 503, in-flight requests finish within the drain grace).
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/sagegate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/sagegate"]
CMD ["serve"]
