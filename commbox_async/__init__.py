"""commbox-async: a fast asyncio client for CommBox's v2 "Get User Objects" API.

Conversations of a user identity, with the real-time count of unread chat messages per
conversation and in total; for one identity, or fanned out over millions under one rate limit.
"""

from ._client import AsyncCommbox, FanOutError, FanOutProgress, FetchResult
from ._config import DEFAULT_BASE_URL, PoolConfig, RateLimit, Retries, Timeout
from ._errors import (
    AuthenticationError,
    BadRequestError,
    ClientClosedError,
    CommboxAPIError,
    CommboxConnectionError,
    CommboxDecodeError,
    CommboxError,
    CommboxTimeoutError,
    CommboxTransportError,
    InvalidArgumentError,
    NotFoundError,
    NotImplementedByServerError,
    RateLimitError,
    ServerError,
)
from ._models import (
    ActivityLog,
    Child,
    CustomerParticipant,
    ErrorBody,
    Identity,
    InvalidItem,
    ObjectStatus,
    ObjectType,
    StreamProviderType,
    User,
    UserObject,
    UserObjectsPage,
    decode_content,
)
from ._pacing import Outcome, PacingModel, PausePolicy, Phase, RateChange, Reason, Ticket
from ._protocol import MAX_PAGE_SIZE, Filters, Query, parse_response, parse_retry_after
from ._stats import StatsSnapshot
from ._throttle import Limiter, LocalLimiter
from ._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_PAGE_SIZE",
    "ActivityLog",
    "AsyncCommbox",
    "AuthenticationError",
    "BadRequestError",
    "Child",
    "ClientClosedError",
    "CommboxAPIError",
    "CommboxConnectionError",
    "CommboxDecodeError",
    "CommboxError",
    "CommboxTimeoutError",
    "CommboxTransportError",
    "CustomerParticipant",
    "ErrorBody",
    "FanOutError",
    "FanOutProgress",
    "FetchResult",
    "Filters",
    "Identity",
    "InvalidArgumentError",
    "InvalidItem",
    "Limiter",
    "LocalLimiter",
    "NotFoundError",
    "NotImplementedByServerError",
    "ObjectStatus",
    "ObjectType",
    "Outcome",
    "PacingModel",
    "PausePolicy",
    "Phase",
    "PoolConfig",
    "Query",
    "RateChange",
    "RateLimit",
    "RateLimitError",
    "Reason",
    "Retries",
    "ServerError",
    "StatsSnapshot",
    "StreamProviderType",
    "Ticket",
    "Timeout",
    "User",
    "UserObject",
    "UserObjectsPage",
    "__version__",
    "decode_content",
    "parse_response",
    "parse_retry_after",
]
