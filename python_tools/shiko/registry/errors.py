"""What a registry operation raises: one line naming the operation, the registry and the status."""


class RegistryError(Exception):
    """A registry operation failed; str() is one line (no credentials, ever)."""

    def __init__(self, message, status=None, retry_after=None):
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class AuthError(RegistryError):
    """401/403, or no usable credentials/token."""


class DigestMismatch(RegistryError):
    """Content did not match the digest it was asked for."""


class Retryable(Exception):
    """Internal: a failure worth another attempt (carries the one-line reason)."""

    def __init__(self, reason, retry_after=None, status=None):
        super().__init__(reason)
        self.retry_after = retry_after
        self.status = status
