"""A real OAuth 2 / OpenID Connect provider for the tests, built on authlib's server components.

authlib's `AuthorizationServer` with its authorization-code grant (PKCE S256 required by
`CodeChallenge`, an id token by `OpenIDCode`), its refresh-token grant (rotating: every refresh
issues a new refresh token and revokes the old one), its RFC 7009 revocation endpoint and its
bearer-token validator (for userinfo), over a `ThreadingHTTPServer` on 127.0.0.1 and a free port.
Everything is kept in memory.

What the tests steer:
- `signed_in`: the user who is "logged in" at the provider and consents at /authorize;
- `access_token_seconds`: access-token lifetime (short, to exercise refresh);
- `deny_authorization`: /authorize answers `error=access_denied`;
- `refuse_token_requests`: /token answers `invalid_grant`;
- `revoke_grants_of(email)`: what a user does in the provider's account settings.

    with running_oauth_server() as provider:
        settings = provider.settings(redirect_uri)
"""

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from authlib.common.security import generate_token
from authlib.oauth2 import AuthorizationServer, OAuth2Error, OAuth2Request, ResourceProtector
from authlib.oauth2.rfc6749 import OAuth2Payload, grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError
from authlib.oauth2.rfc6750 import BearerTokenGenerator, BearerTokenValidator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from joserfc.jwk import RSAKey

from app.oauth.provider import ProviderSettings

CLIENT_ID = "berth-test-client"
CLIENT_SECRET = "berth-test-secret"
SCOPES = ("openid", "email", "calendar.read")


@dataclass(frozen=True)
class User:
    sub: str
    email: str


@dataclass
class Client:
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    scope: str = " ".join(SCOPES)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.scope.split())
        return " ".join(item for item in (scope or "").split() if item in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return client_secret == self.client_secret

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    code_challenge: str
    code_challenge_method: str
    nonce: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class Token:
    client_id: str
    user: User
    scope: str
    access_token: str
    refresh_token: str | None
    issued_at: float
    expires_in: int
    revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> User:
        return self.user

    def get_client(self) -> Client:
        raise NotImplementedError  # not needed by the endpoints served here


class _Payload(OAuth2Payload):
    def __init__(self, values: dict[str, list[str]]):
        self._values = values

    @property
    def data(self) -> dict[str, str]:
        return {key: values[0] for key, values in self._values.items()}

    @property
    def datalist(self) -> dict[str, list[str]]:  # type: ignore[override]
        return self._values


class _Request(OAuth2Request):
    """An HTTP request as authlib's server reads it: query, form and headers."""

    def __init__(self, method: str, url: str, headers: Any, query: dict[str, list[str]], form: dict[str, list[str]]):
        super().__init__(method, url, headers=headers)
        self._query, self._form = query, form
        self.payload = _Payload({**query, **form})

    @property
    def args(self) -> dict[str, str]:
        return {key: values[0] for key, values in self._query.items()}

    @property
    def form(self) -> dict[str, str]:
        return {key: values[0] for key, values in self._form.items()}


class OAuthTestServer(AuthorizationServer):
    def __init__(self, users: list[User]):
        super().__init__(scopes_supported=list(SCOPES))
        self.users = {user.email: user for user in users}
        self.signed_in: User = users[0]
        self.access_token_seconds = 3600
        self.deny_authorization = False
        self.refuse_token_requests = False
        self.key = RSAKey.generate_key(2048, parameters={"kid": "test-key-1", "use": "sig", "alg": "RS256"})
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, AuthorizationCode] = {}
        self.tokens: list[Token] = []
        self.base_url = ""
        self.lock = threading.Lock()  # requests are served on threads; the stores are plain dicts
        self.register_token_generator("default", BearerTokenGenerator(
            access_token_generator=lambda **_: generate_token(42),
            refresh_token_generator=lambda **_: generate_token(48),
            expires_generator=lambda client, grant_type: self.access_token_seconds,
        ))
        self.register_grant(_CodeGrant, [CodeChallenge(required=True), _OpenIDCode(self)])
        self.register_grant(_RefreshGrant)
        self.register_endpoint(_Revocation(self))
        self.protector = ResourceProtector()
        self.protector.register_token_validator(_AccessTokens(self))

    # --- what the tests call ---

    def settings(self, redirect_uri: str, **overrides: Any) -> ProviderSettings:
        """Register `redirect_uri` for the test client; the provider settings berth would hold."""
        self.clients[CLIENT_ID] = Client(CLIENT_ID, CLIENT_SECRET, [redirect_uri])
        return ProviderSettings(**{
            "authorization_endpoint": f"{self.base_url}/authorize", "token_endpoint": f"{self.base_url}/token",
            "userinfo_endpoint": f"{self.base_url}/userinfo", "revocation_endpoint": f"{self.base_url}/revoke",
            "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET, "scopes": SCOPES, "issuer": self.base_url,
            "jwks_uri": f"{self.base_url}/jwks", **overrides})

    def revoke_grants_of(self, email: str) -> None:
        with self.lock:
            for token in self.tokens:
                if token.user.email == email:
                    token.revoked = True

    def live_refresh_tokens(self) -> set[str]:
        return {token.refresh_token for token in self.tokens if token.refresh_token and not token.revoked}

    # --- authlib's framework hooks ---

    def query_client(self, client_id: str) -> Client | None:
        return self.clients.get(client_id)

    def save_token(self, token: dict, request: OAuth2Request) -> None:
        self.tokens.append(Token(client_id=request.client.client_id, user=request.user, scope=token.get("scope", ""),
                                 access_token=token["access_token"], refresh_token=token.get("refresh_token"),
                                 issued_at=time.time(), expires_in=token["expires_in"]))

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request  # the handler below already built authlib's request object

    def create_json_request(self, request: Any) -> Any:
        raise NotImplementedError  # no JSON endpoints (dynamic registration) are served

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, list]:
        return status, body, list(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass


class _CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    server: OAuthTestServer

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        self.server.codes[code] = AuthorizationCode(
            code=code, client_id=request.client.client_id, redirect_uri=data.get("redirect_uri", ""),
            scope=request.client.get_allowed_scope(data.get("scope", "")), user=request.user,
            code_challenge=data["code_challenge"], code_challenge_method=data.get("code_challenge_method", "plain"),
            nonce=data.get("nonce"))

    def query_authorization_code(self, code: str, client: Client) -> AuthorizationCode | None:
        found = self.server.codes.get(code)
        return found if found is not None and found.client_id == client.client_id else None

    def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
        self.server.codes.pop(authorization_code.code, None)  # single use

    def authenticate_user(self, authorization_code: AuthorizationCode) -> User:
        return authorization_code.user


class _OpenIDCode(OpenIDCode):
    def __init__(self, server: OAuthTestServer):
        super().__init__(require_nonce=True)
        self.server = server

    def exists_nonce(self, nonce: str, request: OAuth2Request) -> bool:
        return any(code.nonce == nonce for code in self.server.codes.values())

    def resolve_client_private_key(self, client: Client) -> RSAKey:
        return self.server.key

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": "test-key-1"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        return {"iss": self.server.base_url, "aud": [client.client_id]}

    def generate_user_info(self, user: User, scope: str) -> UserInfo:
        return UserInfo(sub=user.sub, email=user.email, email_verified=True)


class _RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation
    server: OAuthTestServer

    def authenticate_refresh_token(self, refresh_token: str) -> Token | None:
        for token in self.server.tokens:
            if token.refresh_token == refresh_token and not token.revoked:
                return token
        return None

    def authenticate_user(self, refresh_token: Token) -> User:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: Token) -> None:
        refresh_token.revoked = True


class _Revocation(RevocationEndpoint):
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
    server: OAuthTestServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        for token in self.server.tokens:
            if token_string in (token.access_token, token.refresh_token):
                return token
        return None

    def revoke_token(self, token: Token, request: OAuth2Request) -> None:
        token.revoked = True


class _AccessTokens(BearerTokenValidator):
    def __init__(self, server: OAuthTestServer):
        super().__init__()
        self.server = server

    def authenticate_token(self, token_string: str) -> Token | None:
        return next((token for token in self.server.tokens if token.access_token == token_string), None)


class _Handler(BaseHTTPRequestHandler):
    server: "_HTTPServer"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        provider = self.server.provider
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        form = parse_qs(self.rfile.read(length).decode()) if length else {}
        request = _Request(self.command, f"{provider.base_url}{self.path}", self.headers, parse_qs(parts.query), form)
        with provider.lock:
            status, body, headers = self._answer(provider, parts.path, request)
        self._send(status, body, headers)

    def _answer(self, provider: OAuthTestServer, path: str, request: _Request) -> tuple[int, Any, list]:
        if path == "/authorize":
            try:
                grant = provider.get_consent_grant(request, end_user=provider.signed_in)
            except OAuth2Error as error:
                return provider.handle_error_response(request, error)
            user = None if provider.deny_authorization else provider.signed_in
            return provider.create_authorization_response(request, grant_user=user, grant=grant)
        if path == "/token":
            if provider.refuse_token_requests:
                return provider.handle_error_response(request, InvalidGrantError("refused by the test"))
            return provider.create_token_response(request)
        if path == "/revoke":
            return provider.create_endpoint_response("revocation", request)
        if path == "/userinfo":
            try:
                token = provider.protector.validate_request(["openid"], request)
            except OAuth2Error as error:
                return provider.handle_error_response(request, error)
            return 200, dict(UserInfo(sub=token.user.sub, email=token.user.email, email_verified=True)), []
        if path == "/jwks":
            return 200, {"keys": [provider.key.as_dict(private=False)]}, []
        return 404, {"error": "not_found"}, []

    def _send(self, status: int, body: Any, headers: list) -> None:
        import json

        payload = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        names = {name.lower() for name, _ in headers}
        for name, value in headers:
            self.send_header(name, value)
        if "content-type" not in names:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, provider: OAuthTestServer):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.provider = provider


@contextlib.contextmanager
def running_oauth_server(users: list[User] | None = None) -> Iterator[OAuthTestServer]:
    """The provider served on 127.0.0.1 (free port) in a thread; stopped and closed on exit."""
    provider = OAuthTestServer(users or [User("user-ada", "ada@example.com"), User("user-bob", "bob@example.com")])
    http = _HTTPServer(provider)
    provider.base_url = f"http://127.0.0.1:{http.server_address[1]}"
    thread = threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05}, name="oauth-test-server",
                              daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        http.shutdown()
        http.server_close()
        thread.join(timeout=10)
