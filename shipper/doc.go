// Package shipper sends web-server log lines into Kafka for Warden: each
// line keyed by the client of the parsed line, so that one client's
// requests meet in one partition in the order they were logged.
package shipper
