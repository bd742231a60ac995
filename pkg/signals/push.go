package signals

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/agentauth/agentauth/pkg/autherr"
)

// MediaTypeSET is the media type of a bare SET (RFC 8417 §7.2), the body of a push delivery.
const MediaTypeSET = "application/secevent+jwt"

// ServeHTTP is the RFC 8935 push endpoint. A SET that is applied, or was applied before (a retried delivery,
// whose first 202 the transmitter may have missed), is answered 202 Accepted with an empty body, only after
// the Sink persisted it. A refused SET is answered 400 with {"err": code, "description": text} (RFC 8935
// §2.3); a SET we could not process for our own reasons (storage, JWKS unreachable) is answered 503 with
// Retry-After, so the transmitter delivers it again.
func (r *Receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "SET push endpoint: use POST", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || !strings.EqualFold(mt, MediaTypeSET) {
		r.refusePush(w, refuse(CodeInvalidRequest, autherr.ErrMalformed, "Content-Type is %q, want %s",
			truncate(req.Header.Get("Content-Type"), 64), MediaTypeSET))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, int64(r.maxBody)))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			r.refusePush(w, refuse(CodeInvalidRequest, autherr.ErrTooLarge, "body is over %d bytes", r.maxBody))
		} else {
			r.refusePush(w, refuse(CodeInvalidRequest, autherr.ErrMalformed, "reading the body: %v", err))
		}
		return
	}
	auth := req.Header.Get("Authorization")
	if _, err := r.process(req.Context(), strings.TrimSpace(string(body)), &auth); err != nil {
		var se *SETError
		if errors.As(err, &se) {
			writeSETError(w, se)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "5")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]string{"description": "the receiver could not process the SET now; deliver it again"})
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

// refusePush logs and answers a push refused before its SET was looked at (process logs the others).
func (r *Receiver) refusePush(w http.ResponseWriter, e *SETError) {
	r.observe(ResultRefused, autherr.Code(e.Err))
	r.log.Warn("SET refused", zap.String("err", e.Code), zap.Error(e.Err))
	writeSETError(w, e)
}

// setErrorBody is the RFC 8935 §2.3 error response, also used in RFC 8936 setErrs.
type setErrorBody struct {
	Err         string `json:"err"`
	Description string `json:"description,omitempty"`
}

func writeSETError(w http.ResponseWriter, e *SETError) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(setErrorBody{Err: e.Code, Description: e.Err.Error()})
}

var _ http.Handler = (*Receiver)(nil)
