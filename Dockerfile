# jetinfer image: the binary plus the ONNX Runtime library it loads.

# ONNX Runtime 1.24.3 ships in the onnxruntime-node npm package; only its
# shared library is kept (Node.js is not needed at run time).
FROM node:20-bookworm-slim AS ort
WORKDIR /ort
RUN npm pack --silent onnxruntime-node@1.24.3 \
 && tar -xzf onnxruntime-node-1.24.3.tgz package/bin/napi-v6/linux/x64/libonnxruntime.so.1

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -o /out/jetinfer ./cmd/jetinfer

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libstdc++6 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=ort /ort/package/bin/napi-v6/linux/x64/libonnxruntime.so.1 /usr/local/lib/libonnxruntime.so.1
COPY --from=build /out/jetinfer /usr/local/bin/jetinfer
ENV ONNXRUNTIME_LIB=/usr/local/lib/libonnxruntime.so.1
WORKDIR /var/lib/jetinfer
EXPOSE 9200 4222
ENTRYPOINT ["jetinfer"]
CMD ["serve"]
