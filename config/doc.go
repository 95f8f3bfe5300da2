// Package config is Outrigger's configuration: the schema as Go structs, loading,
// defaults, validation and change detection.
//
// Data flows one way. Load reads the YAML file, then OUTRIGGER_-prefixed
// environment variables, then command-line flags (later sources win) into one raw
// key tree with koanf. Defaults written on the struct fields (the `default` tag)
// are filled into that tree wherever a key is absent, so an explicit zero stays
// visible to Validate. The tree is decoded strictly: an unknown key is an error.
// Secrets (`password`, `password_file`, `${ENV}` references) are resolved, and
// Validate reports every problem at once, each naming its key path.
//
// A *Config is immutable once Load returns it: the running sidecar holds one
// snapshot per version and swaps the whole snapshot on reload. Hash gives a
// stable digest of any part of it, so the runtime can tell which listeners,
// pools and TLS profiles a reload left unchanged. Watcher reports changes to
// the config file, including the symlink swap that a Kubernetes ConfigMap
// volume performs.
package config
