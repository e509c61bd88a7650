package compose

import (
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/syncbridge/syncbridge/internal/config"
)

// The compose UI decodes payloads through the codec service: its codec
// endpoint is the codec's published port, the codec grants CORS to the
// UI's published origin, decrypts with the workers' key, and the UI's
// write actions are off.
func TestCodecServiceWiredToUI(t *testing.T) {
	for name, f := range variants(t) {
		ui, codec, w := f.Services["temporal-ui"], f.Services["codec"], f.Services["worker"]
		if ui.Environment["TEMPORAL_DISABLE_WRITE_ACTIONS"] != "true" {
			t.Errorf("%s: UI write actions are on", name)
		}
		if !slices.Contains(codec.Entrypoint, "codec-server") {
			t.Fatalf("%s: codec service does not run the codec server: %v", name, codec.Entrypoint)
		}
		cfg, err := config.Load(func(k string) string { return codec.Environment[k] })
		if err != nil {
			t.Fatalf("%s: codec environment rejected: %v", name, err)
		}
		wcfg, err := config.Load(func(k string) string { return w.Environment[k] })
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Pipeline.PayloadKeys) == 0 || cfg.Pipeline.PayloadKeys[0].ID != wcfg.Pipeline.PayloadKeys[0].ID ||
			string(cfg.Pipeline.PayloadKeys[0].Secret) != string(wcfg.Pipeline.PayloadKeys[0].Secret) {
			t.Errorf("%s: codec and workers use different payload keys", name)
		}
		if wcfg.Codec.Addr != "" {
			t.Errorf("%s: workers serve a codec endpoint too", name)
		}
		_, port := hostPort(t, "SYNCBRIDGE_CODEC_ADDR", cfg.Codec.Addr)
		ep, err := url.Parse(ui.Environment["TEMPORAL_CODEC_ENDPOINT"])
		if err != nil || ep.Port() != port || !slices.Contains(codec.Ports, "127.0.0.1:"+port+":"+port) {
			t.Errorf("%s: UI codec endpoint %q is not the codec's published port %s (%v)", name, ep, port, codec.Ports)
		}
		origin, err := url.Parse(cfg.Codec.UIOrigin)
		if err != nil || !slices.ContainsFunc(ui.Ports, func(p string) bool { return strings.HasPrefix(p, origin.Host+":") }) {
			t.Errorf("%s: codec grants CORS to %q, not the UI's published address %v", name, cfg.Codec.UIOrigin, ui.Ports)
		}
		if cfg.Codec.TrustUIOrigin && !slices.ContainsFunc(codec.Ports, func(p string) bool { return strings.HasPrefix(p, "127.0.0.1:") }) {
			t.Errorf("%s: origin-trusting codec published beyond loopback: %v", name, codec.Ports)
		}
	}
}

// The codec service trusts a forgeable Origin header, and declares its
// 0.0.0.0 listener reachable only through a loopback-published port
// (SYNCBRIDGE_CODEC_LOOPBACK_PUBLISHED). This checks the declaration: the
// codec is alone on its own network, every other service stays off it,
// and every port it publishes is bound to 127.0.0.1.
func TestCodecServiceUnreachableFromOtherContainers(t *testing.T) {
	for name, f := range variants(t) {
		codec := f.Services["codec"]
		cfg, err := config.Load(func(k string) string { return codec.Environment[k] })
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !cfg.Codec.LoopbackPublished {
			continue // then the codec server itself refuses ui-origin off loopback
		}
		if len(codec.Networks) != 1 || codec.Networks[0] == "default" {
			t.Fatalf("%s: codec networks %v, want one of its own", name, codec.Networks)
		}
		own := codec.Networks[0]
		if _, declared := f.Networks[own]; !declared {
			t.Errorf("%s: network %q not declared", name, own)
		}
		for other, s := range f.Services {
			if other != "codec" && slices.Contains(s.Networks, own) {
				t.Errorf("%s: service %s joins the codec's network %q", name, other, own)
			}
		}
		if len(codec.Ports) == 0 || len(codec.Expose) != 0 {
			t.Errorf("%s: codec ports %v, expose %v", name, codec.Ports, codec.Expose)
		}
		for _, p := range codec.Ports {
			if !strings.HasPrefix(p, "127.0.0.1:") {
				t.Errorf("%s: codec port %q is not bound to the host's loopback", name, p)
			}
		}
	}
}
