package auditlog

import "github.com/postern-dev/postern/internal/metrics"

// RegisterMetrics exports the S3 sink's counters on reg as
// postern_SUB_audit_events_pending, _audit_bytes_pending,
// _audit_batches_stored_total and _audit_upload_errors_total. They read 0
// when stats is nil or reports that nothing ships.
func RegisterMetrics(reg *metrics.Registry, stats func() (Stats, bool)) {
	get := func() Stats {
		if stats == nil {
			return Stats{}
		}
		s, _ := stats()
		return s
	}
	reg.GaugeFunc("audit_events_pending", "Audit log lines written and not yet confirmed stored in S3 (0 when the log is not shipped).",
		func() float64 { return float64(get().PendingLines) })
	reg.GaugeFunc("audit_bytes_pending", "Audit log bytes not yet confirmed stored in S3.",
		func() float64 { return float64(get().PendingBytes) })
	reg.CounterFunc("audit_batches_stored_total", "Audit log batches confirmed stored in S3.",
		func() float64 { return float64(get().Batches) })
	reg.CounterFunc("audit_upload_errors_total", "Failed audit log batch uploads.",
		func() float64 { return float64(get().UploadErrors) })
}
