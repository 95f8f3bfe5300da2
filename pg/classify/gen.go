package classify

//go:generate go run ./internal/walkgen -o walk_gen.go
