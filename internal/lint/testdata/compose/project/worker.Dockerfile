FROM scratch
COPY worker /worker
USER 65532
ENTRYPOINT ["/worker"]
