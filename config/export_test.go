package config

// RoutingCheck is the command's Source.Check (compiling event selectors,
// globs and templates), set by routing_check_test.go: the testdata/bad
// files show every problem `validate` reports, positions included, and
// config cannot import what compiles the routing.
var RoutingCheck func(*Config) error
