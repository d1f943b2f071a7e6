"""The Salesforce sandbox's OAuth 2.0 endpoints: refresh token, client credentials, JWT bearer and password flows, revocation, bearer checks."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import TYPE_CHECKING

from sandboxes.server import Request, Response
from sandboxes.sf_common import (
    LATEST_VERSION,
    ORG_ID,
    _not_found,
    _same,
)
from sandboxes.sf_identity import (
    SOAP_LOGIN_FAULT,
    OrgUser,
    identity_document,
    soap_credentials,
    soap_login_result,
    userinfo_document,
)
from sandboxes.sf_schema import (
    to_id18,
)

if TYPE_CHECKING:
    from sandboxes.salesforce import SalesforceEmulator


class OAuthServer:
    """Part of SalesforceEmulator (sandboxes/salesforce.py), holding no state of its own."""

    def __init__(self, emulator: SalesforceEmulator) -> None:
        self.emulator = emulator

    def _token(self, request: Request) -> Response:
        if request.method != "POST":
            return _not_found()
        # OAuth asks for a urlencoded form; a multipart one carries the same fields [A: whether
        # Salesforce's token endpoint takes multipart is not documented].
        form = request.form()
        grant = form.get("grant_type", "")
        client_id = form.get("client_id")
        client_secret = form.get("client_secret")
        basic = request.headers.get("authorization", "")
        if basic.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(basic[6:]).decode()
            except ValueError:
                return self._oauth_error("invalid_client", "invalid client credentials")
            client_id, _, client_secret = decoded.partition(":")
        user_id = self.emulator.integration_user_id
        if grant == "client_credentials":
            if client_id != self.emulator.client_id:
                return self._oauth_error("invalid_client_id", "client identifier invalid")
            if not _same(client_secret, self.emulator.client_secret):
                return self._oauth_error("invalid_client", "invalid client credentials")
        elif grant == "password":
            if client_id != self.emulator.client_id:
                return self._oauth_error("invalid_client_id", "client identifier invalid")
            if not _same(client_secret, self.emulator.client_secret):
                return self._oauth_error("invalid_client", "invalid client credentials")
            password = form.get("password", "")
            if form.get("username") != self.emulator.username or password not in (
                self.emulator.password,
                self.emulator.password + self.emulator.security_token,
            ):
                return self._oauth_error("invalid_grant", "authentication failure")
        elif grant == "refresh_token":
            if client_id != self.emulator.client_id:
                return self._oauth_error("invalid_client_id", "client identifier invalid")
            if client_secret is not None and not _same(client_secret, self.emulator.client_secret):
                return self._oauth_error("invalid_client", "invalid client credentials")
            if not _same(form.get("refresh_token"), self.emulator.demo_refresh_token):
                return self._oauth_error("invalid_grant", "expired access/refresh token")
        elif grant == "urn:ietf:params:oauth:grant-type:jwt-bearer":
            problem = self._check_assertion(form.get("assertion", ""), request.base_url)
            if problem is not None:
                return self._oauth_error(*problem)
        else:
            return self._oauth_error("unsupported_grant_type", "grant type not supported")
        token = self.emulator.issue_token(user_id)
        issued = str(int(time.time() * 1000))
        identity = f"{request.base_url}/id/{ORG_ID}/{user_id}"
        signature = base64.b64encode(
            hmac.new(
                self.emulator.client_secret.encode(), (identity + issued).encode(), hashlib.sha256
            ).digest()
        ).decode()
        return Response.json(
            200,
            {
                "access_token": token,
                "instance_url": request.base_url,
                "id": identity,
                "token_type": "Bearer",
                "issued_at": issued,
                "signature": signature,
                "scope": "api",
            },
        )

    @staticmethod
    def _oauth_error(code: str, description: str) -> Response:
        return Response.json(400, {"error": code, "error_description": description})

    def _check_assertion(self, assertion: str, base_url: str) -> tuple[str, str] | None:
        import jwt

        try:
            if self.emulator._jwt_public_key is not None:
                claims = jwt.decode(
                    assertion,
                    self.emulator._jwt_public_key,
                    algorithms=["RS256"],
                    options={"verify_exp": False, "verify_aud": False},
                )
            else:
                claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            return ("invalid_grant", "invalid assertion")
        if claims.get("iss") != self.emulator.client_id:
            return ("invalid_client_id", "client identifier invalid")
        if claims.get("sub") != self.emulator.username:
            return ("invalid_grant", "user hasn't approved this consumer")
        audiences = {
            base_url,
            "https://login.salesforce.com",
            "https://test.salesforce.com",
        }
        audience = claims.get("aud")
        given = set(audience) if isinstance(audience, list) else {audience}
        if not given & audiences:
            return ("invalid_grant", "audience is invalid")
        try:
            expires = float(claims["exp"])  # simple-salesforce sends exp as a string
        except (KeyError, TypeError, ValueError):
            return ("invalid_grant", "expiration is invalid")
        if expires < time.time():
            return ("invalid_grant", "expired authorization code")
        return None

    def _soap_login(self, request: Request) -> Response:
        # SOAP partner API login(): simple-salesforce prefixes the elements (<n1:username>),
        # jsforce puts them in the default namespace (<username>); both are the same XML.
        credentials = soap_credentials(request.body.decode("utf-8", "replace"))
        if (
            credentials is None
            or credentials[0] != self.emulator.username
            or credentials[1]
            not in (self.emulator.password, self.emulator.password + self.emulator.security_token)
        ):
            return Response(
                500, SOAP_LOGIN_FAULT.encode(), {"Content-Type": "text/xml;charset=UTF-8"}
            )
        token = self.emulator.issue_token()
        version = request.path.rstrip("/").rsplit("/", 1)[-1]
        server = f"{request.base_url}/services/Soap/u/{version}/{ORG_ID}"
        body = soap_login_result(
            self._org_user(self.emulator.integration_user_id),
            server,
            token,
            int(self.emulator.session_seconds or 7200),
        )
        return Response(200, body.encode(), {"Content-Type": "text/xml;charset=UTF-8"})

    def _org_user(self, user_id: str) -> OrgUser:
        with self.emulator._lock:
            row = self.emulator.rows["User"][user_id]
            return OrgUser(
                org_id=ORG_ID,
                org_name="crm-risk sandbox org",
                user_id=user_id,
                username=row["Username"],
                email=row["Email"],
                full_name=row["Name"],
                active=bool(row["IsActive"]),
                last_modified=row["LastModifiedDate"],
            )

    def _identity(self, request: Request) -> Response:
        # GET (or POST) /id/{orgId}/{userId}, the URL every token response returns as `id`.
        user_id = self.emulator._session_user(request, query_token=True)
        if user_id is None:
            return Response(403, b"Bad_OAuth_Token", {"Content-Type": "text/plain"})
        parts = request.path.strip("/").split("/")
        if len(parts) != 3 or parts[1] not in (ORG_ID, ORG_ID[:15]):
            return _not_found()
        # Another user's identity needs the api/full scope and View Setup; the sandbox's
        # integration user has both, so any user of the org may be looked up.
        wanted = to_id18(parts[2])
        if wanted is None or wanted not in self.emulator.rows["User"]:
            return _not_found()
        version = request.param("version")
        if version == "latest":
            version = f"{LATEST_VERSION:.1f}"
        document = identity_document(
            self._org_user(wanted), request.base_url, request.base_url, version
        )
        return Response.json(200, document)

    def _userinfo(self, request: Request) -> Response:
        # OpenID Connect UserInfo: GET or POST with the access token as a bearer header.
        user_id = self.emulator._session_user(request, query_token=True)
        if user_id is None:
            return Response(403, b"Bad_OAuth_Token", {"Content-Type": "text/plain"})
        return Response.json(
            200, userinfo_document(self._org_user(user_id), request.base_url, request.base_url)
        )
