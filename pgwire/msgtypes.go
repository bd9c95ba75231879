package pgwire

// Message type bytes (PostgreSQL's protocol, "Message Formats"). The same
// byte names different messages in the two directions, so each direction has
// its own names.

// Messages the client sends.
const (
	feQuery        = 'Q'
	feParse        = 'P'
	feBind         = 'B'
	feExecute      = 'E'
	feDescribe     = 'D'
	feClose        = 'C'
	feSync         = 'S'
	feFlush        = 'H'
	feFunctionCall = 'F'
	feCopyData     = 'd'
	feCopyDone     = 'c'
	feCopyFail     = 'f'
	feTerminate    = 'X'
)

// Messages the server sends.
const (
	beParseComplete        = '1'
	beBindComplete         = '2'
	beCloseComplete        = '3'
	beCommandComplete      = 'C'
	beDataRow              = 'D'
	beErrorResponse        = 'E'
	beCopyInResponse       = 'G'
	beCopyOutResponse      = 'H'
	beEmptyQueryResponse   = 'I'
	beRowDescription       = 'T'
	beFunctionCallResponse = 'V'
	beCopyBothResponse     = 'W'
	beNoData               = 'n'
	bePortalSuspended      = 's'
	beParameterDescription = 't'
	beParameterStatus      = 'S'
	beReadyForQuery        = 'Z'
)

// Targets of Describe and Close.
const (
	targetStatement = 'S'
	targetPortal    = 'P'
)

// ReadyForQuery transaction status bytes.
const (
	txIdle    = 'I'
	txInBlock = 'T'
	txFailed  = 'E'
)
