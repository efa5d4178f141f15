"""commbox-async: a fast asyncio client for CommBox's v2 "Get User Objects" API.

Conversations of a user identity, with the real-time count of unread chat messages per
conversation and in total; for one identity, or fanned out over millions under one rate limit.
"""

from ._cache import Cache
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
from ._protocol import MAX_PAGE_SIZE, Query, parse_response, parse_retry_after
from ._stats import StatsSnapshot
from ._throttle import Limiter, LocalLimiter, RateEstimator, Ticket
from ._version import __version__

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_PAGE_SIZE",
    "ActivityLog",
    "AsyncCommbox",
    "AuthenticationError",
    "BadRequestError",
    "Cache",
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
    "Identity",
    "InvalidArgumentError",
    "InvalidItem",
    "Limiter",
    "LocalLimiter",
    "NotFoundError",
    "NotImplementedByServerError",
    "ObjectStatus",
    "ObjectType",
    "PoolConfig",
    "Query",
    "RateEstimator",
    "RateLimit",
    "RateLimitError",
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
