"""What SshWorker runs on the target: POSIX shell texts, and the parsing of their answers.

No I/O here. Every text is run as ``/bin/sh -c TEXT name ARGS...``: the values
come as positional arguments (quoted by ``command``), never spliced into the text.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping
from typing import Any

STATUS_PREFIX = "tentacle-ssh "  # the wrapper's first line on stdout, before the script's
WORK, LOCKS, BIN, BUNDLES, FILES = "Work", "Locks", "bin", "calamari", "Files"
SHIM = f"{BIN}/tentacle"
KEEP_OUTCOMES_DAYS = 7  # how long a ticket's recorded exit code stays on the target

# Prepares the root once per connection and prints its absolute path. Old tickets'
# folders (their exit codes) go after KEEP_OUTCOMES_DAYS.
PREPARE = f"""\
umask 077
mkdir -p "$1/{WORK}" "$1/{LOCKS}" "$1/{BIN}" "$1/{BUNDLES}" "$1/{FILES}" || exit 1
cd "$1" || exit 1
find {WORK} -mindepth 1 -maxdepth 1 -mtime +{KEEP_OUTCOMES_DAYS} -exec rm -rf {{}} + 2>/dev/null
pwd
"""

# The tentacle shim: `$TentacleExecutablePath calamari ...` runs the executor zipapp.
SHIM_TEXT = """\
#!/bin/sh
if ! command -v python3 >/dev/null 2>&1; then
  echo "python3 is not installed on this SSH worker: tentacle calamari needs it" >&2
  exit 127
fi
exec python3 {bundle} "$@"
"""

INSTALL_SHIM = """\
umask 077
printf '%s' "$2" > "$1.partial" && chmod 700 "$1.partial" && mv -f "$1.partial" "$1"
"""

# The step's wrapper. stdin brings a line with the length of the environment's
# exports, the exports (eval'd: they live in this shell's memory and its children's
# environment, never on disk), then the script's body (written to the ticket's
# folder). The first line on stdout says whether the script started now, or had
# finished or was running from an earlier execute of the ticket. The script runs
# in a session of its own (its process group recorded in .pgid, for cancel), under
# an flock of the isolation mutex (exclusive for "full", shared for "none"), with
# the lock's descriptor closed for it. Its exit code is recorded in `exitcode`, and
# the folder's other files removed.
WRAPPER = f"""\
root=$1 ticket=$2 isolation=$3 mutex=$4 wait_for=$5 grace=$6 program=$7
shift 7
w="$root/{WORK}/$ticket"
IFS= read -r size || exit 125
environment=$(head -c "$size")
eval "$environment"
unset environment size
mask=$(umask)
umask 077
mkdir -p "$w" || exit 125
chmod 700 "$w"
if ! mkdir "$w/.started" 2>/dev/null; then
  if [ -f "$w/exitcode" ]; then
    echo "{STATUS_PREFIX}finished $(cat "$w/exitcode")"
  else
    echo "{STATUS_PREFIX}running"
  fi
  exit 0
fi
cat > "$w/.script" || exit 125
cd "$w" || exit 125
printf '%s\\n' "$grace" > .grace
printf '%s\\n' "$$" > .wrapper
umask "$mask"
echo "{STATUS_PREFIX}started"
exec 9>>"$root/{LOCKS}/$mutex"
if command -v flock >/dev/null 2>&1; then
  mode=-x
  [ "$isolation" = none ] && mode=-s
  if ! flock -n "$mode" 9; then
    if [ -n "$wait_for" ]; then
      if ! flock "$mode" -w "$wait_for" 9; then
        echo "Timed out after $wait_for s waiting for the isolation mutex $mutex" >&2
        echo 1 > exitcode
        exit 1
      fi
    else
      flock "$mode" 9
    fi
  fi
fi
# From here the wrapper's own messages (a shell reporting a killed job, say) go
# nowhere: writing to a channel that dropped would kill it before it records the code
exec 7>&1 8>&2 >/dev/null 2>&1
if command -v setsid >/dev/null 2>&1; then
  setsid "$program" .script "$@" </dev/null >&7 2>&8 7>&- 8>&- 9>&- &
else
  "$program" .script "$@" </dev/null >&7 2>&8 7>&- 8>&- 9>&- &
fi
exec 7>&- 8>&-
pid=$!
printf '%s\\n' "$pid" > .pgid
if [ -e .cancel ]; then
  kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  ( sleep "$grace"; kill -KILL "-$pid" 2>/dev/null ) </dev/null >/dev/null 2>&1 9>&- &
fi
wait "$pid"
code=$?
printf '%s\\n' "$code" > .exitcode.partial && mv -f .exitcode.partial exitcode
find . -mindepth 1 -maxdepth 1 ! -name exitcode ! -name .started ! -name .cancel \
  -exec rm -rf {{}} + 2>/dev/null
exit "$code"
"""

# Cancel: mark the ticket (the wrapper checks the mark once the process group is
# recorded), then SIGTERM its process group, SIGKILL after its grace; returns once
# the wrapper recorded the exit code.
CANCEL = f"""\
w="$1/{WORK}/$2"
[ -d "$w" ] || exit 0
[ -f "$w/exitcode" ] && exit 0
: > "$w/.cancel"
[ -f "$w/.pgid" ] || exit 0
pid=$(cat "$w/.pgid")
grace=$(cat "$w/.grace" 2>/dev/null || echo 10)
kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || exit 0
tenths=$(awk "BEGIN {{ printf \\"%d\\", $grace * 10 }}" 2>/dev/null || echo 100)
while [ "$tenths" -gt 0 ] && kill -0 "-$pid" 2>/dev/null; do
  sleep 0.1
  tenths=$((tenths - 1))
done
kill -KILL "-$pid" 2>/dev/null
# the wrapper records the exit code once the group is gone: wait for it (bounded)
wrapper=$(cat "$w/.wrapper" 2>/dev/null || echo 0)
tries=100
while [ "$tries" -gt 0 ] && [ ! -f "$w/exitcode" ] && kill -0 "$wrapper" 2>/dev/null; do
  sleep 0.05
  tries=$((tries - 1))
done
exit 0
"""

CAPABILITIES = """\
echo "OS=$(uname -s)"
echo "OSVersion=$(uname -r)"
echo "Architecture=$(uname -m)"
shells=""
for s in bash sh python3; do
  command -v "$s" >/dev/null 2>&1 && shells="$shells $s"
done
echo "Shells=$shells"
mkdir -p "$1" 2>/dev/null
echo "FreeKilobytes=$(df -Pk "$1" 2>/dev/null | awk 'NR == 2 { print $4 }')"
echo "Cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null)"
echo "MemoryKilobytes=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo 2>/dev/null)"
echo "Python=$(python3 --version 2>&1 | grep '^Python' || true)"
"""

SYNTAXES = {"bash": "bash", "sh": "sh", "python": "python3"}  # Syntax -> program
SHELL_FOR = {"bash": "bash", "sh": "sh", "python3": "python"}  # a program found -> Syntax


def command(text: str, *arguments: str) -> str:
    """The command line running ``text`` with ``arguments`` as $1...; whatever the login
    shell is (sh-like), the text reaches /bin/sh as one argument."""
    return " ".join(
        shlex.quote(part) for part in ("exec", "/bin/sh", "-c", text, "tentacle", *arguments)
    )


def exports(environment: Mapping[str, str]) -> bytes:
    """The ``export NAME='value'`` lines the wrapper evals (names checked before)."""
    return "".join(
        f"export {name}={shlex.quote(value)}\n" for name, value in sorted(environment.items())
    ).encode()


def wrapper_input(environment: Mapping[str, str], body: str) -> bytes:
    """The wrapper's stdin: the exports' length, the exports, the body."""
    text = exports(environment)
    return f"{len(text)}\n".encode() + text + body.encode()


def parse_status(line: str) -> tuple[str, int | None]:
    """The wrapper's first line: ("started", None), ("finished", code), ("running",
    None); ValueError for anything else (the wrapper did not run as expected)."""
    if not line.startswith(STATUS_PREFIX):
        raise ValueError(f"expected the step wrapper's status line, got {line[:200]!r}")
    words = line[len(STATUS_PREFIX) :].split()
    if words in (["started"], ["running"]):
        return words[0], None
    if len(words) == 2 and words[0] == "finished" and re.fullmatch(r"-?\d+", words[1]):
        return "finished", int(words[1])
    raise ValueError(f"unexpected step wrapper status {line[:200]!r}")


def parse_capabilities(text: str) -> dict[str, Any]:
    """The CAPABILITIES output as the capabilities keys the hub reads."""
    facts = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    programs = facts.get("Shells", "").split()
    free = facts.get("FreeKilobytes", "")
    memory = facts.get("MemoryKilobytes", "")
    cpus = facts.get("Cpus", "")
    return {
        "OS": facts.get("OS") or "Unknown",
        "OSVersion": facts.get("OSVersion") or "",
        "Architecture": facts.get("Architecture") or "Unknown",
        "Shells": [SHELL_FOR[p] for p in programs if p in SHELL_FOR],
        "FreeDiskBytes": int(free) * 1024 if free.isdigit() else None,
        "Cpus": int(cpus) if cpus.isdigit() else None,
        "MemoryBytes": int(memory) * 1024 if memory.isdigit() else None,
        "Python": facts.get("Python") or None,
    }


def safe_ticket(ticket: str) -> str:
    """``ticket`` if it can name a folder, else ValueError (tickets are hex/ids)."""
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", ticket):
        raise ValueError(
            f"ticket {ticket[:60]!r} cannot name a working folder; expected letters, digits, "
            "'.', '_' or '-' (up to 200)"
        )
    return ticket


def mutex_file(name: str) -> str:
    """The lock file's name for a mutex: its safe characters, the rest as %XX."""
    return "".join(c if c.isalnum() or c in "._-" else f"%{ord(c):02X}" for c in name)[:200]


def within(root: str, path: str) -> str | None:
    """``path`` (relative to ``root``, or absolute) as an absolute normalised path, if
    it stays inside ``root`` and is not ``root`` itself; else None."""
    joined = posixpath.normpath(posixpath.join(root, path))
    if joined == root or not joined.startswith(root.rstrip("/") + "/"):
        return None
    return joined


def workspace_name(name: str) -> str | None:
    """A script's file name, if it stays in the workspace (no '..', not absolute, not
    the wrapper's own files); else None."""
    normal = posixpath.normpath(name)
    if name.startswith("/") or normal.startswith("..") or normal in (".", ""):
        return None
    if normal.split("/")[0] in (".script", ".started", ".grace", ".pgid", ".wrapper",
                                ".cancel", "exitcode"):  # fmt: skip
        return None
    return normal
