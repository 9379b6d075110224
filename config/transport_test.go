package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoadTransports(t *testing.T) {
	c, err := Load(Source{Path: "testdata/good/transport.yaml", Environ: environ(testEnv...)})
	if err != nil {
		for _, p := range Problems(err) {
			t.Error(p)
		}
		t.Fatal(err)
	}
	log, bus, oslo := &c.Callbacks[0], &c.Callbacks[1], &c.Callbacks[2]
	if log.IsAMQP() || log.URLTemplate() == "" || !bus.IsAMQP() || bus.URLTemplate() != "" {
		t.Errorf("types: %q %q, url templates %q %q", log.Type, bus.Type, log.URLTemplate(), bus.URLTemplate())
	}
	if bus.AMQP.URL != "amqps://tap:tok-123@rabbit:5671/ops" {
		t.Errorf("amqp.url not expanded: %q", RedactURL(bus.AMQP.URL))
	}
	a := bus.AMQPSettings()
	if !*a.Durable || !*a.Persistent || !*a.Mandatory || a.ConfirmTimeout != 5*time.Second || a.RoutingKey != "mistral.{{ .Event.Type }}" {
		t.Errorf("bus settings %+v", a)
	}
	o := oslo.AMQPSettings()
	if o.Exchange != OsloExchange || o.RoutingKey != OsloRoutingKey || *o.Durable || !*o.Mandatory || !*o.Persistent ||
		o.ConfirmTimeout != oslo.Timeout || o.Heartbeat != 10*time.Second || o.ExchangeType != "topic" {
		t.Errorf("oslo defaults %+v", o)
	}
	r := c.Redacted()
	if strings.Contains(r.Callbacks[1].AMQP.URL, "tok-123") || strings.Contains(r.Callbacks[2].AMQP.URL, "tok-123") {
		t.Errorf("Redacted keeps the AMQP password: %q", r.Callbacks[1].AMQP.URL)
	}
}
