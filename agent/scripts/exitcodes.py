"""Exit codes reserved for outcomes other than the script's own exit (Tentacle's values)."""

FATAL = -41
LAUNCH_FAILED = -42
CANCELLED = -43
TIMEOUT = -44
UNKNOWN_SCRIPT = -45
UNKNOWN_RESULT = -46

NAMES = {
    FATAL: "fatal error in the agent",
    LAUNCH_FAILED: "the script could not be launched",
    CANCELLED: "cancelled before it started",
    TIMEOUT: "timed out waiting for the isolation mutex",
    UNKNOWN_SCRIPT: "unknown script ticket",
    UNKNOWN_RESULT: "the script's result is unknown",
}


def describe(code: int) -> str:
    """A reserved code's meaning, or 'exit code N' for a script's own code."""
    return NAMES.get(code, f"exit code {code}")
