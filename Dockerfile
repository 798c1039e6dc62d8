# jetinfer image: one static-ish binary; the ONNX Runtime library is added
# when the inference engine lands.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -o /out/jetinfer ./cmd/jetinfer

FROM debian:bookworm-slim
COPY --from=build /out/jetinfer /usr/local/bin/jetinfer
WORKDIR /var/lib/jetinfer
EXPOSE 9200 4222
ENTRYPOINT ["jetinfer"]
CMD ["serve"]
