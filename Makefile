# make run   — a server for localhost on the embedded store, nothing else needed
# make test  — installs what the tests need and runs every test
.PHONY: run test build vet bench

build:
	go build -o bin/aviary ./cmd/aviary

run:
	go run ./cmd/aviary serve --domain localhost

test:
	bash .ci/test.sh

vet:
	gofmt -l . && go vet ./...
