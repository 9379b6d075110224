//go:build tools

// Package tools pins dependencies that packages are still being written against.
// Remove once every module below is imported by real code.
package tools
import (
 _ "github.com/elazarl/goproxy"
 _ "github.com/hashicorp/go-retryablehttp"
 _ "github.com/knadh/koanf/v2"
 _ "github.com/knadh/koanf/providers/file"
 _ "github.com/knadh/koanf/providers/env/v2"
 _ "github.com/knadh/koanf/providers/posflag"
 _ "github.com/knadh/koanf/providers/structs"
 _ "github.com/knadh/koanf/parsers/yaml"
 _ "github.com/spf13/pflag"
 _ "gopkg.in/yaml.v3"
 _ "modernc.org/sqlite"
 _ "github.com/prometheus/client_golang/prometheus"
 _ "golang.org/x/sync/errgroup"
)
