"""Exceptions and process exit codes shared by the library and the CLI."""

# Exit codes of `flowprep` commands: 0 all good, PARTIAL when some clips failed
# (the build itself completed), FATAL when the command could not do its job.
EXIT_OK = 0
EXIT_PARTIAL = 3
EXIT_FATAL = 2


class FlowprepError(Exception):
    """A user-facing error: the message says what went wrong and what to do."""


class ClipError(FlowprepError):
    """One clip cannot be processed. The build records it and goes on.

    ``stage`` names where it failed (decode, roi, flow, ...); the message is the reason.
    """

    stage = "clip"

    def __init__(self, reason: str, stage: str | None = None):
        super().__init__(reason)
        if stage is not None:
            self.stage = stage


class DecodeError(ClipError):
    stage = "decode"


class NoFaceError(ClipError):
    stage = "roi"
