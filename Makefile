# make run   — a server for localhost on the embedded store, nothing else needed
# make test  — installs what the tests need and runs every test
.PHONY: run test build vet bench

build:
	go build -o bin/aviary ./cmd/aviary

run:
	@echo 'building ./cmd/aviary (the first build takes a few minutes)'
	go build -v -o bin/aviary ./cmd/aviary
	bin/aviary serve --domain localhost

test:
	bash .ci/test.sh

vet:
	gofmt -l . && go vet ./...
