package registry

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/sirupsen/logrus"
)

// distribution logs through logrus' standard logger. gantry logs through
// slog: the logrus output is discarded, and its warnings and errors are
// forwarded to the logger of the most recently opened registry.
var (
	logrusOnce   sync.Once
	logrusTarget atomic.Pointer[slog.Logger]
)

// routeLogrus sends distribution's warnings to l; nil only silences logrus.
func routeLogrus(l *slog.Logger) {
	if l != nil {
		logrusTarget.Store(l)
	}
	logrusOnce.Do(func() {
		std := logrus.StandardLogger()
		std.SetOutput(io.Discard)
		std.SetLevel(logrus.WarnLevel)
		std.AddHook(slogHook{})
	})
}

type slogHook struct{}

func (slogHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (slogHook) Fire(e *logrus.Entry) error {
	l := logrusTarget.Load()
	if l == nil {
		return nil
	}
	lvl := slog.LevelWarn
	if e.Level <= logrus.ErrorLevel {
		lvl = slog.LevelError
	}
	// distribution logs every 4xx answer (an unknown blob a client probes
	// for, a digest mismatch) as an error; they are the client's business.
	if st, ok := e.Data["http.response.status"].(int); ok && st < 500 {
		lvl = slog.LevelDebug
	}
	switch e.Message {
	case "canonical digest does match provided digest", "error canceling upload after error: already closed":
		lvl = slog.LevelDebug
	}
	if strings.HasPrefix(e.Message, "looking up blob with canonical target") {
		lvl = slog.LevelDebug
	}
	attrs := make([]slog.Attr, 0, len(e.Data)+1)
	attrs = append(attrs, slog.String("component", "distribution"))
	for k, v := range e.Data {
		switch k {
		case "go.version", "instance.id", "service", "version":
			continue // the same on every line
		}
		attrs = append(attrs, slog.Any(k, v))
	}
	l.LogAttrs(context.Background(), lvl, e.Message, attrs...)
	return nil
}
