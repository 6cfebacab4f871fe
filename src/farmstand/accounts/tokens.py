"""Signed, expiring session tokens (itsdangerous); the token carries only the session id."""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

_SALT = "farmstand.session"


class TokenSigner:
    def __init__(self, secret_key: str, max_age_seconds: int) -> None:
        self._serializer = URLSafeTimedSerializer(secret_key, salt=_SALT)
        self.max_age_seconds = max_age_seconds

    def sign(self, session_id: str) -> str:
        return self._serializer.dumps(session_id)

    def unsign(self, token: str) -> str | None:
        """The session id, or None when the token is forged, malformed or expired."""
        try:
            value = self._serializer.loads(token, max_age=self.max_age_seconds)
        except (BadSignature, SignatureExpired):
            return None
        return value if isinstance(value, str) else None
