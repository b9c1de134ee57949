// Package shipper sends web-server log lines into Kafka for Warden.
//
// Every line is keyed by the client of the parsed line (Keyer), so that one
// client's requests meet in one partition in the order they were logged.
// A Follower follows files like `tail -F` (rotation by rename and by
// copytruncate, files appearing later, partial last lines) and ships each
// line exactly once across its own restarts and crashes: each record names
// its file and byte offset in headers, and at start the Follower reads its
// own last records back from the topic to learn where every file stands.
// DESIGN.md has the mechanics and the argument.
package shipper
