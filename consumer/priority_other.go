//go:build !linux

package consumer

// lowerPriority does nothing where threads have no priority of their own
// (see priority_linux.go).
func lowerPriority() error { return nil }
