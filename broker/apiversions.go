package broker

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// librdkafka (kcat, and the clients built on it) looks for SaslHandshake
// version 0 among the versions a broker advertises before it will try SASL
// at all; kfake serves SaslHandshake from version 1 only (version 0 is the
// pre-KIP-152 framing nobody sends any more), so kcat refused a SASL-enabled
// embedded broker with "SASL Handshake not supported by broker". A real
// Kafka advertises 0 to 1. advertiseHandshakeV0 answers ApiVersions requests
// up to v3 (librdkafka's and Java's) with kfake's own answer in which
// SaslHandshake starts at 0; a client that did send a v0 handshake would
// still be refused by kfake. Newer requests (franz-go's) go to kfake as is.
func advertiseHandshakeV0(c *kfake.Cluster, addr string, tc *tls.Config) error {
	base, err := probeApiVersions(addr, tc)
	if err != nil {
		return fmt.Errorf("broker: read its own API versions: %w", err)
	}
	for i := range base.ApiKeys {
		if base.ApiKeys[i].ApiKey == int16(kmsg.SASLHandshake) {
			base.ApiKeys[i].MinVersion = 0
		}
	}
	c.ControlKey(int16(kmsg.ApiVersions), func(r kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		req := r.(*kmsg.ApiVersionsRequest)
		if req.Version > base.Version {
			return nil, nil, false
		}
		resp := *base
		resp.ApiKeys = append([]kmsg.ApiVersionsResponseApiKey(nil), base.ApiKeys...)
		resp.Version = req.Version
		return &resp, nil, true
	})
	return nil
}

// probeApiVersions asks the broker at addr for its API versions with an
// ApiVersions v3 request, the version librdkafka sends.
func probeApiVersions(addr string, tc *tls.Config) (*kmsg.ApiVersionsResponse, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	var conn net.Conn
	var err error
	if tc != nil {
		conn, err = tls.DialWithDialer(d, "tcp", addr, tc)
	} else {
		conn, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	req := kmsg.NewPtrApiVersionsRequest()
	req.Version = 3
	req.ClientSoftwareName, req.ClientSoftwareVersion = "warden-broker", "1"
	if _, err := conn.Write(kmsg.NewRequestFormatter(kmsg.FormatterClientID("warden-broker")).AppendRequest(nil, req, 1)); err != nil {
		return nil, err
	}
	var size [4]byte
	if _, err := io.ReadFull(conn, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > 1<<20 {
		return nil, fmt.Errorf("ApiVersions response of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(conn, body); err != nil {
		return nil, err
	}
	// The response header of ApiVersions is never flexible: the
	// correlation id, then the body.
	resp := req.ResponseKind().(*kmsg.ApiVersionsResponse)
	resp.Version = req.Version
	if err := resp.ReadFrom(body[4:]); err != nil {
		return nil, err
	}
	if resp.ErrorCode != 0 {
		return nil, fmt.Errorf("ApiVersions error code %d", resp.ErrorCode)
	}
	return resp, nil
}
