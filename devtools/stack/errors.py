"""Errors of the local stack."""


class StackError(RuntimeError):
    """A local service could not be installed, started or reached; the message says why."""
