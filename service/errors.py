"""The exception tree of promptcache.

Library code raises these; the API layer maps each class to one HTTP status and an
Anthropic-style error body (`service.api.errors`), the CLI to one line and a non-zero exit.
Errors from the Anthropic SDK are translated into this tree at the upstream boundary, so no
other module needs to know the SDK's exception classes.

    PromptCacheError
    ├── InvalidRequest          400  the request is malformed or inconsistent
    │   ├── PayloadTooLarge     413  a prompt over the configured size limit
    │   └── Unprocessable       422  well-formed but semantically invalid values
    ├── AuthenticationFailed    401  missing or unknown API key
    ├── PermissionDenied        403  the key's role may not do this
    ├── NotFound                404  no such entry / batch
    ├── Conflict                409  the state forbids it (index built with another model, ...)
    ├── RateLimited             429  upstream rate limit or a budget refusal
    ├── ClientGone              499  the client hung up while its request waited
    ├── ConfigError             --   settings that cannot work; raised at start
    ├── StorageError            503  the store or the index cannot be used
    └── UpstreamError           502/503/504  the Anthropic API failed
        ├── UpstreamUnavailable 5xx  upstream's own 5xx (529 overloaded, 500, ...), passed on
        │                            with its status and type; 503 when it cannot be reached
        ├── UpstreamTimeout     504
        ├── UpstreamAuthError   502  the upstream rejected promptcache's key (no retry)
        └── UpstreamNotConfigured 503  no upstream key configured (no retry)

`should_retry = False` marks an error no retry can cure (promptcache's own configuration, a
spent budget): the API layer sends `x-should-retry: false` with it, so the SDK does not
retry. Otherwise the client's SDK decides by the status, as it would talking to Anthropic.
"""

from __future__ import annotations


class PromptCacheError(Exception):
    """Base class. `error_type` is the Anthropic-style `error.type` string."""

    status: int = 500
    error_type: str = "api_error"
    should_retry: bool | None = None  # None: the client's SDK decides by the status

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        # Response headers the HTTP layer adds (upstream's `retry-after`, `retry-after-ms`,
        # `x-should-retry`). Shared by every
        # request that waited on the same upstream call: nothing per request goes here.
        self.headers: dict[str, str] = {}


class InvalidRequest(PromptCacheError):
    status = 400
    error_type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    status = 413
    error_type = "request_too_large"


class Unprocessable(InvalidRequest):
    status = 422
    error_type = "invalid_request_error"


class AuthenticationFailed(PromptCacheError):
    status = 401
    error_type = "authentication_error"


class PermissionDenied(PromptCacheError):
    status = 403
    error_type = "permission_error"


class NotFound(PromptCacheError):
    status = 404
    error_type = "not_found_error"


class Conflict(PromptCacheError):
    status = 409
    error_type = "conflict_error"


class RateLimited(PromptCacheError):
    status = 429
    error_type = "rate_limit_error"

    def __init__(self, message: str, error_type: str = "rate_limit_error") -> None:
        super().__init__(message)
        self.error_type = error_type


class ClientGone(PromptCacheError):
    """The client left while its request waited on an identical one: nobody reads an answer
    now, so it is not served (no hit row claims a saving) and never goes upstream."""

    status = 499
    error_type = "client_closed_request"


class ConfigError(PromptCacheError):
    status = 500
    error_type = "config_error"


class StorageError(PromptCacheError):
    status = 503
    error_type = "storage_error"


class Superseded(StorageError):
    """An answer not stored because an invalidation covering it ran after its request began
    (`service.invalidations`). A `StorageError`, so a caller that only knows those still
    delivers and bills the answer."""


class UpstreamError(PromptCacheError):
    status = 502
    error_type = "api_error"


class UnreadableAnswer(UpstreamError):
    """Upstream answered 200 with a body that is not a readable message: it billed the call,
    for token counts nobody can read."""


class UpstreamUnavailable(UpstreamError):
    """Upstream answered with a 5xx (its status and error type are kept, so a 529 is still an
    `OverloadedError` to the SDK), or could not be reached at all (503)."""

    status = 503
    error_type = "api_error"

    def __init__(
        self, message: str, *, status: int | None = None, error_type: str | None = None
    ) -> None:
        super().__init__(message)
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type


class UpstreamTimeout(UpstreamError):
    status = 504
    error_type = "timeout_error"


class UpstreamAuthError(UpstreamError):
    """Upstream refused promptcache's own key: the caller's request is fine, and a retry
    fails the same way until the service is reconfigured."""

    status = 502
    error_type = "api_error"
    should_retry = False


class UpstreamNotConfigured(UpstreamError):
    """No upstream key is configured, so misses cannot be forwarded (hits still work)."""

    status = 503
    error_type = "api_error"
    should_retry = False
