package app

import (
	"github.com/mistral-tap/mistral-tap/config"
	amqppub "github.com/mistral-tap/mistral-tap/notifier/amqp"
)

// AMQPEndpoints lists the AMQP endpoint of every type amqp callback, with
// the defaults of config.Callback.AMQPSettings applied.
func AMQPEndpoints(cfg *config.Config) map[string]amqppub.Endpoint {
	eps := map[string]amqppub.Endpoint{}
	for i := range cfg.Callbacks {
		cb := &cfg.Callbacks[i]
		if !cb.IsAMQP() {
			continue
		}
		a := cb.AMQPSettings()
		eps[cb.Name] = amqppub.Endpoint{
			URL: a.URL, CAFile: a.CAFile, Exchange: a.Exchange, ExchangeType: a.ExchangeType,
			Declare: a.Declare, Durable: *a.Durable, Persistent: *a.Persistent, Mandatory: *a.Mandatory,
			ConfirmTimeout: a.ConfirmTimeout, Heartbeat: a.Heartbeat,
		}
	}
	return eps
}

// routingKey is the routing key (template) of an AMQP callback, "" for
// HTTP callbacks.
func routingKey(cb *config.Callback) string {
	if !cb.IsAMQP() {
		return ""
	}
	return cb.AMQPSettings().RoutingKey
}
