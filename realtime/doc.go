// Package realtime turns committed procon_realtimes rows and logical messages into throttled
// per-channel notifications.
package realtime
