"""What a new hub starts with, and what a new machine policy holds: Octopus's defaults."""

from __future__ import annotations

from typing import Any

DEFAULT_SPACE = "Default"
DEFAULT_POOL = "Default Worker Pool"
DEFAULT_POLICY = "Default Machine Policy"

# The bash health check a policy runs unless it says OnlyConnectivity. Octopus's
# default bash check is empty; ours reports the free space of the worker's home.
DEFAULT_BASH_HEALTH_SCRIPT = 'df -Pk . | awk \'NR == 2 { print "Free disk space: " $4 " KiB" }\'\n'


def policy_settings() -> dict[str, Any]:
    """A new machine policy's settings, in Octopus's MachinePolicyResource shape."""
    return {
        "MachineHealthCheckPolicy": {
            "HealthCheckInterval": "01:00:00",
            "HealthCheckType": "RunScript",
            "HealthCheckCron": None,
            "HealthCheckCronTimezone": "UTC",
            "BashHealthCheckPolicy": {
                "RunType": "Inline",
                "ScriptBody": DEFAULT_BASH_HEALTH_SCRIPT,
            },
            "PowerShellHealthCheckPolicy": {"RunType": "Inline", "ScriptBody": ""},
        },
        "MachineConnectivityPolicy": {"MachineConnectivityBehavior": "ExpectedToBeOnline"},
        "MachineCleanupPolicy": {
            "DeleteMachinesBehavior": "DoNotDelete",
            "DeleteMachinesElapsedTimeSpan": "1.00:00:00",
        },
        "MachineUpdatePolicy": {
            "CalamariUpdateBehavior": "UpdateOnDeployment",
            "TentacleUpdateBehavior": "NeverUpdate",
        },
        "PollingRequestQueueTimeout": "00:02:00",
        "PollingRequestMaximumMessageProcessingTimeout": "00:10:00",
        "ConnectionRetrySleepInterval": "00:00:01",
        "ConnectionRetryCountLimit": 5,
        "ConnectionRetryTimeLimit": "00:05:00",
        "ConnectionConnectTimeout": "00:01:00",
        # ours: warn (HasWarnings) when the worker's home has less free space than this
        "FreeDiskSpaceWarningMegabytes": 500,
    }
