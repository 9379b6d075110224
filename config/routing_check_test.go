package config_test

import (
	"github.com/mistral-tap/mistral-tap/cmd/mistral-tap/app"
	"github.com/mistral-tap/mistral-tap/config"
)

func init() { config.RoutingCheck = app.Check }
