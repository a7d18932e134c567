"""What can go wrong in an OAuth sign-in or a refresh, as berth errors (`app.errors`).

Each carries a stable `reason` the callback page and the status route can show beside the message.
"""

from app.errors import BerthError


class OAuthError(BerthError):
    status = 400
    reason = "oauth_error"
    default_message = "the sign-in with the provider failed"


class StateUnknown(OAuthError):
    reason = "state_unknown"
    default_message = "this sign-in link is unknown or was already used; start the connection again"


class StateMismatch(OAuthError):
    reason = "state_mismatch"
    default_message = "the provider answered for a different sign-in; start the connection again"


class StateExpired(OAuthError):
    reason = "state_expired"
    default_message = "this sign-in link has expired; start the connection again"


class AccessDenied(OAuthError):
    status = 403
    reason = "access_denied"
    default_message = "access was not granted at the provider"


class InvalidGrant(OAuthError):
    """The provider refused a code or a refresh token: used, expired or revoked. Reconnect."""

    reason = "invalid_grant"
    default_message = "the provider no longer accepts this grant; connect the account again"


class ProviderError(OAuthError):
    status = 502
    reason = "provider_error"
    default_message = "the provider answered with an error"


class ProviderUnreachable(OAuthError):
    status = 502
    reason = "provider_unreachable"
    default_message = "the provider could not be reached; try again"


class IdTokenInvalid(OAuthError):
    status = 502
    reason = "id_token_invalid"
    default_message = "the provider's id token did not verify"
