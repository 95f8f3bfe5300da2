package pg

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/outrigger/outrigger/pool"
)

// SQLSTATE codes Outrigger answers with itself.
const (
	codeProtocolViolation     = "08P01"
	codeConnectionFailure     = "08006"
	codeCannotConnect         = "08001"
	codeInvalidAuthorization  = "28000"
	codeInvalidPassword       = "28P01"
	codeTooManyConnections    = "53300"
	codeInsufficientPrivilege = "42501"
	codeFeatureNotSupported   = "0A000"
	codeInvalidCatalog        = "3D000"
	codeQueryCanceled         = "57014"
	codeAdminShutdown         = "57P01"
	codeIdleInTxTimeout       = "25P03"
	codeTxTimeout             = "25P04"
	codeIdleSessionTimeout    = "57P05"
	codeInternal              = "XX000"
)

// Error is an error Outrigger answers a client with: a Postgres
// ErrorResponse with a real SQLSTATE. Fatal ones end the session.
type Error struct {
	Code    string
	Message string
	Detail  string
	Fatal   bool
	Err     error
	// refusal marks a policy refusal, which rule (or rate limit) made.
	refusal bool
	rule    string
}

func (e *Error) Error() string {
	if e.Err != nil {
		return "pg: " + e.Message + ": " + e.Err.Error()
	}
	return "pg: " + e.Message
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// SQLState returns the SQLSTATE the client gets.
func (e *Error) SQLState() string { return e.Code }

func fatalf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Fatal: true}
}

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// clientError renders any error as the *Error a client gets. It is the one
// place where an internal error becomes a SQLSTATE.
func clientError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var pe *ProtocolError
	if errors.As(err, &pe) {
		return &Error{Code: codeProtocolViolation, Message: pe.Msg, Fatal: true, Err: err}
	}
	var at *pool.AcquireTimeoutError
	if errors.As(err, &at) {
		return &Error{Code: codeTooManyConnections, Message: at.Error(), Err: err}
	}
	var tw *pool.TooManyWaitersError
	if errors.As(err, &tw) {
		return &Error{Code: codeTooManyConnections, Message: tw.Error(), Err: err}
	}
	var se *pgconn.PgError
	if errors.As(err, &se) {
		// The upstream refused the login (bad credentials, no such database):
		// pass its answer on.
		return &Error{Code: se.Code, Message: se.Message, Detail: se.Detail, Fatal: true, Err: err}
	}
	if errors.Is(err, pool.ErrClosed) {
		return &Error{Code: codeAdminShutdown, Message: "the pool is shutting down", Fatal: true, Err: err}
	}
	var de *pool.DialError
	if errors.As(err, &de) {
		return &Error{Code: codeCannotConnect, Message: "cannot connect to the database server: " + de.Err.Error(), Fatal: true, Err: err}
	}
	return &Error{Code: codeConnectionFailure, Message: err.Error(), Fatal: true, Err: err}
}

// appendError appends e as an ErrorResponse.
func appendError(dst []byte, e *Error) []byte {
	sev := "ERROR"
	if e.Fatal {
		sev = "FATAL"
	}
	er := pgproto3.ErrorResponse{Severity: sev, SeverityUnlocalized: sev, Code: e.Code, Message: e.Message, Detail: e.Detail}
	out, err := er.Encode(dst)
	if err != nil {
		return dst
	}
	return out
}
