package testservers_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sidelog/sidelog/internal/testservers"
)

// do sends one request to the OpenSearch node and decodes its JSON answer.
func do(t *testing.T, method, url, ctype string, body []byte, want int) map[string]any {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, url, resp.StatusCode, want, raw)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %v: %s", method, url, err, raw)
	}
	return out
}

// The OpenSearch node from scripts/servers indexes 10,000 documents sent in
// bulk requests and counts all of them.
func TestOpenSearchBulkTenThousand(t *testing.T) {
	base := testservers.OpenSearch(t)
	root := do(t, http.MethodGet, base+"/", "", nil, http.StatusOK)
	version, _ := root["version"].(map[string]any)
	if version["distribution"] != "opensearch" {
		t.Fatalf("GET / = %v, want an OpenSearch node", root)
	}
	bulkAndCount(t, base)
}

// The Elasticsearch 7.17 node from scripts/servers says it is Elasticsearch
// (X-Elastic-Product, which clients check) and indexes and counts 10,000
// documents.
func TestElasticsearch7BulkTenThousand(t *testing.T) {
	base := testservers.Elasticsearch7(t)
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Elastic-Product"); got != "Elasticsearch" {
		t.Fatalf("X-Elastic-Product = %q", got)
	}
	root := do(t, http.MethodGet, base+"/", "", nil, http.StatusOK)
	version, _ := root["version"].(map[string]any)
	if n, _ := version["number"].(string); len(n) < 5 || n[:5] != "7.17." {
		t.Fatalf("GET / = %v, want Elasticsearch 7.17", root)
	}
	bulkAndCount(t, base)
}

func bulkAndCount(t *testing.T, base string) {
	t.Helper()
	index := testservers.UniqueName(t, "smoke")
	const total, perRequest = 10000, 2500
	for start := 0; start < total; start += perRequest {
		var body bytes.Buffer
		for i := start; i < start+perRequest; i++ {
			fmt.Fprintf(&body, `{"create":{"_index":%q}}`+"\n", index)
			fmt.Fprintf(&body, `{"seq":%d,"message":"line %d"}`+"\n", i, i)
		}
		out := do(t, http.MethodPost, base+"/_bulk", "application/x-ndjson", body.Bytes(), http.StatusOK)
		if out["errors"] != false {
			t.Fatalf("bulk from %d had errors: %v", start, out)
		}
		if items, _ := out["items"].([]any); len(items) != perRequest {
			t.Fatalf("bulk from %d answered %d items, want %d", start, len(items), perRequest)
		}
	}
	do(t, http.MethodPost, base+"/"+index+"/_refresh", "", nil, http.StatusOK)
	out := do(t, http.MethodGet, base+"/"+index+"/_count", "", nil, http.StatusOK)
	if n, _ := out["count"].(float64); n != total {
		t.Fatalf("count = %v, want %d", out["count"], total)
	}
	do(t, http.MethodDelete, base+"/"+index, "", nil, http.StatusOK)
}

// The Kafka broker from scripts/servers takes 10,000 records from a franz-go
// producer and gives all of them back, in order, to a consumer.
func TestKafkaProduceConsumeTenThousand(t *testing.T) {
	brokers := testservers.Kafka(t)
	topic := testservers.UniqueName(t, "smoke")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	producer, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.DefaultProduceTopic(topic),
		kgo.AllowAutoTopicCreation(),
		kgo.ProducerLinger(5*time.Millisecond),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const total = 10000
	for i := 0; i < total; i++ {
		producer.Produce(ctx, &kgo.Record{Value: []byte(strconv.Itoa(i))}, func(r *kgo.Record, err error) {
			if err != nil {
				t.Errorf("produce %s: %v", r.Value, err)
			}
		})
	}
	if err := producer.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	next := 0
	for next < total {
		fetches := consumer.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", next, total, err)
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			t.Fatalf("fetch %s/%d: %v", topic, partition, err)
		})
		fetches.EachRecord(func(r *kgo.Record) {
			if string(r.Value) != strconv.Itoa(next) {
				t.Fatalf("record %d is %q, want %d (one partition keeps order)", next, r.Value, next)
			}
			next++
		})
	}
}
