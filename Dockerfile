# dvt-operator container image: a static binary on distroless, non-root, read-only-root friendly.
#   docker build -t dvt-operator:dev .
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
# Without the default `demo` feature: the image carries the operator, not the simulator.
RUN cargo build --release --locked --no-default-features --target x86_64-unknown-linux-musl --bin dvt-operator \
 && cp target/x86_64-unknown-linux-musl/release/dvt-operator /dvt-operator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /dvt-operator /dvt-operator
USER 65532:65532
EXPOSE 8080
# The chart passes the subcommand (`run` and its flags) as args.
ENTRYPOINT ["/dvt-operator"]
