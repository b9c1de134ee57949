package shipper

import (
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are ship's Prometheus metrics. A nil *Metrics records nothing.
type Metrics struct {
	reg *prometheus.Registry
	// lines and bytes read and sent, by source (a file path, "stdin",
	// "syslog").
	lines, bytes *prometheus.CounterVec
	acked        prometheus.Counter
	// lag is, per followed file, the bytes written to it that Kafka has not
	// acknowledged yet (including bytes not read yet), computed when scraped.
	lag      *lagCollector
	errors   *prometheus.CounterVec
	skipped  prometheus.Counter
	partial  prometheus.Counter
	long     prometheus.Counter
	files    prometheus.Gauge
	dropped  *prometheus.CounterVec
	blocked  prometheus.Gauge
	syslogIn *prometheus.CounterVec
}

// NewMetrics registers ship's metrics in a registry of their own.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.lines = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_ship_lines_total", Help: "Lines read and sent to Kafka, by source (file path, stdin, syslog)."}, []string{"source"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_ship_bytes_total", Help: "Bytes of the lines sent to Kafka, by source."}, []string{"source"})
	m.acked = prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_ship_acked_lines_total", Help: "Lines Kafka acknowledged."})
	m.lag = &lagCollector{desc: prometheus.NewDesc("warden_ship_lag_bytes", "Per followed file: bytes in the file not yet acknowledged by Kafka (read or not).", []string{"file"}, nil)}
	m.errors = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_ship_errors_total", Help: "Errors, by kind (produce, read, syslog)."}, []string{"kind"})
	m.skipped = prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_ship_recovered_lines_total", Help: "Lines found already in Kafka at start and not sent again."})
	m.partial = prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_ship_partial_lines_flushed_total", Help: "Last lines without a newline sent after --partial-timeout."})
	m.long = prometheus.NewCounter(prometheus.CounterOpts{Name: "warden_ship_long_lines_split_total", Help: "Lines longer than --max-line, sent in pieces."})
	m.files = prometheus.NewGauge(prometheus.GaugeOpts{Name: "warden_ship_files", Help: "Files being followed."})
	m.dropped = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_ship_syslog_dropped_total", Help: "Syslog messages lost: reason=kernel (UDP datagrams the socket buffer overflowed, as the kernel counts them), reason=malformed (not syslog), reason=oversized."}, []string{"reason"})
	m.syslogIn = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warden_ship_syslog_messages_total", Help: "Syslog messages received, by transport (udp, tcp)."}, []string{"transport"})
	m.blocked = prometheus.NewGauge(prometheus.GaugeOpts{Name: "warden_ship_backpressure", Help: "1 while the buffer of unacknowledged lines is full and reading waits for Kafka."})
	m.reg.MustRegister(m.lines, m.bytes, m.acked, m.lag, m.errors, m.skipped, m.partial, m.long, m.files, m.dropped, m.syslogIn, m.blocked)
	return m
}

// WatchBuffered exports n() as the gauge of records waiting for Kafka's
// acknowledgement (the producer's buffer).
func (m *Metrics) WatchBuffered(n func() int64) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warden_ship_buffered_records",
		Help: "Records sent and not yet acknowledged by Kafka (bounded by --buffer-lines)."}, func() float64 { return float64(n()) }))
}

// Registry is where the metrics are registered (more can be added).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

func (m *Metrics) sent(source string, n int) {
	if m != nil {
		m.lines.WithLabelValues(source).Inc()
		m.bytes.WithLabelValues(source).Add(float64(n))
	}
}

func (m *Metrics) ack() {
	if m != nil {
		m.acked.Inc()
	}
}

func (m *Metrics) err(kind string) {
	if m != nil {
		m.errors.WithLabelValues(kind).Inc()
	}
}

// lagCollector asks the Follower for its files' lag at each scrape, so
// that the figure is current even while reading waits for Kafka.
type lagCollector struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	fn   func() []FileLag
}

func (c *lagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *lagCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	fn := c.fn
	c.mu.Unlock()
	if fn == nil {
		return
	}
	for _, l := range fn() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(l.Lag), l.Path)
	}
}

func (m *Metrics) watchLag(fn func() []FileLag) {
	if m != nil {
		m.lag.mu.Lock()
		m.lag.fn = fn
		m.lag.mu.Unlock()
	}
}

func (m *Metrics) setFiles(n int) {
	if m != nil {
		m.files.Set(float64(n))
	}
}

func (m *Metrics) setBlocked(on bool) {
	if m != nil {
		v := 0.0
		if on {
			v = 1
		}
		m.blocked.Set(v)
	}
}

func (m *Metrics) drop(reason string, n uint64) {
	if m != nil && n > 0 {
		m.dropped.WithLabelValues(reason).Add(float64(n))
	}
}

func (m *Metrics) syslogMessage(transport string) {
	if m != nil {
		m.syslogIn.WithLabelValues(transport).Inc()
	}
}
