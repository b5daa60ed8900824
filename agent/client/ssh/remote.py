"""What SshWorker runs on the target: POSIX shell texts, and the parsing of their answers.

No I/O here. Every text is run as ``/bin/sh -c TEXT name ARGS...``: the values
come as positional arguments (quoted by ``command``), never spliced into the text.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from agent.protocol.services import Capabilities, ProcessTree, wire_fields

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

# The step's wrapper, run by bash where there is bash (else by sh, slower: a few
# more processes). The ticket's folder was made (0700) by SFTP, no process. stdin
# brings the environment's exports, the marker ($8), the script's body and the
# marker again, up to its end of file: input cut short (the connection dropped
# while it came, and sshd ended the wrapper's stdin) lacks the last marker and
# runs nothing. The exports are eval'd (they live in this shell's memory and its
# children's environment, never on disk). The first line on stdout says whether the script
# started now, or had finished or was running from an earlier execute of the
# ticket: .started is created with noclobber (once) and is the ticket's one
# bookkeeping file, a line per fact (grace, wrapper, pgid, exit), each appended by
# one small write, whole or not at all. The script runs in a process group of its
# own (set -m; setsid under sh), recorded for cancel, under an flock of the
# isolation mutex (exclusive for "full", shared for "none"; its descriptor closed
# for the script). A bash script is eval'd in a forked subshell (no file, no second
# bash); other syntaxes run their program on .script. On the way only flock runs
# as a process of its own and one file is created: on a loaded machine each costs
# about a millisecond (P7, docs/decisions.md).
WRAPPER = f"""\
root=$1 ticket=$2 isolation=$3 mutex=$4 wait_for=$5 grace=$6 program=$7 marker=$8
shift 8
# The lock is asked for first, in the background (flock holds it for the open file
# this shell keeps), so that flock starts while the rest is read and written
exec 9>>"$root/{LOCKS}/$mutex" || exit 125
lock=
if command -v flock >/dev/null 2>&1; then
  mode=-x
  [ "$isolation" = none ] && mode=-s
  if [ -n "$wait_for" ]; then
    flock "$mode" -w "$wait_for" 9 </dev/null >/dev/null 2>&1 &
  else
    flock "$mode" 9 </dev/null >/dev/null 2>&1 &
  fi
  lock=$!
fi
if [ -n "$BASH_VERSION" ]; then
  IFS= read -r -d '' all
else
  all=$(cat; echo .)
  all=${{all%.}}
fi
case $all in
  *"$marker") ;;
  *) kill $lock 2>/dev/null; echo "the step's input was cut short: nothing ran" >&2; exit 125 ;;
esac
cd "$root/{WORK}/$ticket" || {{ kill $lock 2>/dev/null; exit 125; }}
environment=${{all%%"$marker"*}}
body=${{all#*"$marker"}}
body=${{body%"$marker"}}
unset all
eval "$environment"
unset environment
set -C
if ! printf 'grace %s\\nwrapper %s\\nlock %s\\n' "$grace" "$$" "$lock" 2>/dev/null >.started
then
  kill $lock 2>/dev/null
  code=
  while IFS=' ' read -r key value; do
    [ "$key" = exit ] && code=$value
  done <.started
  if [ -n "$code" ]; then
    echo "{STATUS_PREFIX}finished $code"
  else
    echo "{STATUS_PREFIX}running"
  fi
  exit 0
fi
set +C
if [ "$program" != bash ] || [ -z "$BASH_VERSION" ]; then
  printf '%s' "$body" >.script || exit 125
  unset body
fi
echo "{STATUS_PREFIX}started"
if [ -n "$lock" ] && ! wait "$lock"; then
  if [ -e .cancel ]; then
    echo "Cancelled while waiting for the isolation mutex $mutex" >&2
    code=143
  else
    echo "Timed out after $wait_for s waiting for the isolation mutex $mutex" >&2
    code=1
  fi
  printf 'exit %s\\n' "$code" >>.started
  exit "$code"
fi
# From here the wrapper's own messages (a shell reporting a killed job, say) go
# nowhere: writing to a channel that dropped would kill it before it records the code
exec 7>&1 8>&2 >/dev/null 2>&1
unset root ticket isolation mutex wait_for mode marker lock
if [ -n "$BASH_VERSION" ]; then
  set -m
  if [ "$program" = bash ]; then
    (unset program grace; set +m; eval "$body") </dev/null >&7 2>&8 7>&- 8>&- 9>&- &
  else
    "$program" .script "$@" </dev/null >&7 2>&8 7>&- 8>&- 9>&- &
  fi
elif command -v setsid >/dev/null 2>&1; then
  setsid "$program" .script "$@" </dev/null >&7 2>&8 7>&- 8>&- 9>&- &
else
  "$program" .script "$@" </dev/null >&7 2>&8 7>&- 8>&- 9>&- &
fi
pid=$!
exec 7>&- 8>&-
unset body
printf 'pgid %s\\n' "$pid" >>.started
if [ -e .cancel ]; then
  kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
  ( sleep "$grace"; kill -KILL "-$pid" 2>/dev/null ) </dev/null >/dev/null 2>&1 9>&- &
fi
wait "$pid"
code=$?
printf 'exit %s\\n' "$code" >>.started
# the workspace's files go (in the background, if there are any); .started stays
extra=
for f in * .[!.]* ..?*; do
  case "$f" in
    .started|.cancel) ;;
    *) [ -e "$f" ] && extra=1 ;;
  esac
done
if [ -n "$extra" ]; then
  for f in * .[!.]* ..?*; do
    case "$f" in
      .started|.cancel) ;;
      *) rm -rf -- "$f" ;;
    esac
  done </dev/null >/dev/null 2>&1 9>&- &
fi
exit "$code"
"""

# Cancel: mark the ticket (the wrapper checks the mark once the process group is
# recorded), then SIGTERM its process group, SIGKILL after its grace; returns once
# the wrapper recorded the exit code.
CANCEL = f"""\
w="$1/{WORK}/$2"
[ -f "$w/.started" ] || exit 0
: > "$w/.cancel"
facts() {{
  pid= grace=10 wrapper=0 code= lock=
  while IFS=' ' read -r key value; do
    case "$key" in
      pgid) pid=$value ;; grace) grace=$value ;; wrapper) wrapper=$value ;; exit) code=$value ;;
      lock) lock=$value ;;
    esac
  done <"$w/.started"
}}
facts
[ -n "$code" ] && exit 0
if [ -z "$pid" ]; then
  # still waiting for the isolation mutex: the waiting flock goes, the wrapper says so
  [ -n "$lock" ] && kill "$lock" 2>/dev/null
  exit 0
fi
kill -TERM "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || exit 0
tenths=$(awk "BEGIN {{ printf \\"%d\\", $grace * 10 }}" 2>/dev/null || echo 100)
while [ "$tenths" -gt 0 ] && kill -0 "-$pid" 2>/dev/null; do
  sleep 0.1
  tenths=$((tenths - 1))
done
kill -KILL "-$pid" 2>/dev/null
# the wrapper records the exit code once the group is gone: wait for it (bounded)
tries=100
while [ "$tries" -gt 0 ] && kill -0 "$wrapper" 2>/dev/null; do
  facts
  [ -n "$code" ] && exit 0
  sleep 0.05
  tries=$((tries - 1))
done
exit 0
"""

CAPABILITIES = """\
echo "os=$(uname -s)"
echo "os_version=$(uname -r)"
echo "architecture=$(uname -m)"
shells=""
for s in bash sh python3; do
  command -v "$s" >/dev/null 2>&1 && shells="$shells $s"
done
echo "shells=$shells"
mkdir -p "$1" 2>/dev/null
echo "free_kilobytes=$(df -Pk "$1" 2>/dev/null | awk 'NR == 2 { print $4 }')"
echo "cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null)"
echo "memory_kilobytes=$(awk '/^MemTotal:/ { print $2 }' /proc/meminfo 2>/dev/null)"
echo "python=$(python3 --version 2>&1 | grep '^Python' || true)"
"""

SYNTAXES = {"bash": "bash", "sh": "sh", "python": "python3"}  # Syntax -> program
SHELL_FOR = {"bash": "bash", "sh": "sh", "python3": "python"}  # a program found -> Syntax


def command(text: str, *arguments: str) -> str:
    """The command line running ``text`` with ``arguments`` as $1... under /bin/sh;
    whatever the login shell is (sh-like), the text reaches it as one argument."""
    return _quoted("exec", "/bin/sh", "-c", text, "tentacle", *arguments)


def bash_command(text: str, *arguments: str) -> str:
    """``command`` under bash where the target has it, else /bin/sh."""
    tail = _quoted("-c", text, "tentacle", *arguments)
    return f"command -v bash >/dev/null 2>&1 && exec bash {tail} || exec /bin/sh {tail}"


# Run by the login shell before PREPARE: whether it is bash (steps then run their
# wrapper in it, without starting another shell)
LOGIN_PROBE = 'printf "login=%s\\n" "${BASH_VERSION:+bash}"; '


def step_command(login_is_bash: bool, text: str, *arguments: str) -> str:
    """The wrapper's command line: given to a bash login shell as it is (one process
    fewer), else ``bash_command``."""
    if login_is_bash:
        return f"set -- {_quoted(*arguments)}\n{text}"
    return bash_command(text, *arguments)


def parse_prepared(text: str) -> tuple[str, bool]:
    """LOGIN_PROBE + PREPARE's output: the root's absolute path, and whether the login
    shell is bash."""
    lines = text.splitlines()
    login_is_bash = bool(lines) and lines[0] == "login=bash"
    root = next((line for line in reversed(lines) if line.startswith("/")), "")
    return root, login_is_bash


def _quoted(*parts: str) -> str:
    return " ".join(shlex.quote(part) for part in parts)


def exports(environment: Mapping[str, str]) -> bytes:
    """The ``export NAME='value'`` lines the wrapper evals (names checked before)."""
    return "".join(
        f"export {name}={shlex.quote(value)}\n" for name, value in sorted(environment.items())
    ).encode()


def wrapper_input(environment: Mapping[str, str], body: str, marker: str) -> bytes:
    """The wrapper's stdin: the exports, ``marker`` (absent from both: a random
    token), the body, ``marker`` again (the input came whole); without NUL (a shell
    variable cannot hold one)."""
    data = exports(environment) + marker.encode() + body.encode() + marker.encode()
    return data.replace(b"\0", b"")


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


def parse_capabilities(text: str, services: Sequence[str] = ()) -> dict[str, Any]:
    """The CAPABILITIES output as an agent's capabilities (the contract's
    ``Capabilities``, so its names are the agent's), a number the target did not tell
    None, and ``Python``: its python3's version or None."""
    facts = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    programs = facts.get("shells", "").split()
    numbers = {  # attribute -> (the text, its unit in bytes)
        "free_disk_bytes": (facts.get("free_kilobytes", ""), 1024),
        "cpus": (facts.get("cpus", ""), 1),
        "memory_bytes": (facts.get("memory_kilobytes", ""), 1024),
    }
    sizes: dict[str, Any] = {
        name: int(text) * unit if text.isdigit() else 0 for name, (text, unit) in numbers.items()
    }
    found = Capabilities(
        supported_capabilities=tuple(services),
        agent_version="",
        os=facts.get("os") or "Unknown",
        os_version=facts.get("os_version") or "",
        architecture=facts.get("architecture") or "Unknown",
        shells=tuple(SHELL_FOR[p] for p in programs if p in SHELL_FOR),
        process_tree=ProcessTree.SESSION,  # an SSH worker's scripts: no cgroups
        **sizes,
    ).to_wire()
    for attribute, field in wire_fields(Capabilities):
        if attribute == "agent_version" or not numbers.get(attribute, ("0",))[0].isdigit():
            found[field.name] = None  # not an agent; not told
    return {**found, "Python": facts.get("python") or None}


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
    if normal.split("/")[0] in (".script", ".started", ".cancel"):
        return None
    return normal
