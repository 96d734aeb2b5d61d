# The launchready binary for docker-compose.yml.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/launchready ./cmd/launchready

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates wget && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/launchready /usr/local/bin/launchready
COPY examples/mapping.yaml /etc/launchready/mapping.yaml
ENV LR_MAPPING_FILE=/etc/launchready/mapping.yaml
EXPOSE 8080
ENTRYPOINT ["launchready"]
