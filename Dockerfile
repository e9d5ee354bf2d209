# phigate container image. Build: docker build -t phigate .
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin phigate

FROM debian:bookworm-slim
# openssl: the compose file's one-shot certificate generator uses it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates openssl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /nonexistent phigate \
 && mkdir -p /run/phigate-tls /var/lib/phigate/audit \
 && chown phigate /run/phigate-tls /var/lib/phigate/audit
# New named volumes mounted at /run/phigate-tls and the audit spool start
# with this owner.
COPY --from=build /src/target/release/phigate /usr/local/bin/phigate
# The schema, the example policies with their tests and entities: what
# `phigate policy init` writes, for reading and for mounting as a start.
COPY --from=build /src/policies /usr/share/phigate/policies
USER phigate
ENTRYPOINT ["/usr/local/bin/phigate"]
CMD ["serve", "--config", "/etc/phigate/phigate.toml"]
