package clustertest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// httpc is the client of every GET: a node that does not answer within 2 s
// counts as not answering.
var httpc = &http.Client{Timeout: 2 * time.Second}

// GetRaw fetches url; an answer other than 200 is an error naming the path
// and the status.
func GetRaw(url string) ([]byte, error) {
	resp, err := httpc.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", resp.Request.URL.RequestURI(), resp.Status)
	}
	return b, nil
}

// GetJSON fetches url and decodes its JSON document into v.
func GetJSON(url string, v any) error {
	b, err := GetRaw(url)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// ClusterDoc is the part of an agent's /v1/cluster the harness reads.
type ClusterDoc struct {
	Leader string `json:"leader"`
}

// PartitionDoc is the part of one entry of an agent's /v1/partitions the
// harness reads (the full document is node.PartitionInfo, which this
// package does not import).
type PartitionDoc struct {
	Partition int32  `json:"partition"`
	Owner     string `json:"owner"`
	Epoch     uint64 `json:"epoch"`
	Committed int64  `json:"committed_offset"`
}

// Partitions reads /v1/partitions from the agent serving HTTP on addr.
func Partitions(addr string) ([]PartitionDoc, error) {
	var out []PartitionDoc
	return out, GetJSON("http://"+addr+"/v1/partitions", &out)
}
