package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

// A commit that failed without a definite answer, or that Kafka ended, is one a new start
// recovers from; a definite refusal is not.
func TestRestartable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("unable to dial: %w", io.ErrUnexpectedEOF), true},
		{kerr.CoordinatorNotAvailable, true},
		{kerr.UnknownServerError, true},
		{kerr.ProducerFenced, true},
		{kerr.InvalidProducerEpoch, true},
		{kerr.InvalidTxnState, true},
		{kerr.TransactionalIDAuthorizationFailed, false},
		{kerr.UnsupportedVersion, false},
		{context.Canceled, false},
	} {
		if got := restartable(fmt.Errorf("commit: %w", tc.err)); got != tc.want {
			t.Errorf("restartable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if !errors.Is(fmt.Errorf("%w: %w", ErrRestart, kerr.ProducerFenced), ErrRestart) {
		t.Fatal("ErrRestart does not survive wrapping")
	}
}
