package sidecar

// NewHTTPProxy is the Builder for http listeners.
func NewHTTPProxy(env Env, section any) (Handler, error) { panic("todo") }
