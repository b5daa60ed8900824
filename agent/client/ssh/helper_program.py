"""The step helper's program: what python3 runs on an SSH target, one per connection.

A text, not a module of this package: it is sent to the target (``boot_command``
in agent.client.ssh.frames) and run there by whatever python3 the target has, so
it keeps to python 3.6 and the standard library (this process only sends it). The
frames it reads and writes, and what it does with each step, are described in
agent.client.ssh.frames; its keepers' facts in ``.started`` are the shell
wrapper's (agent.client.ssh.remote.WRAPPER), so remote.CANCEL works on either.
tests/unit/client/test_ssh_frames.py runs it for real.
"""

PROGRAM = r'''
import fcntl
import gc
import json
import os
import selectors
import signal
import struct
import sys

HEADER = struct.Struct(">cII")  # kind, step, length of what follows
LIMIT = 64 * 1024 * 1024
HELLO = "tentacle-step-helper 1"
STATUS, STDOUT, STDERR = 0, 1, 2  # a step's pipes, read in this order
KINDS = {STDOUT: b"O", STDERR: b"E"}
BODY_VARIABLE = "TENTACLE_STEP_BODY"
BODY_IN_ENVIRONMENT = 100000  # characters; a longer body goes by .script (E2BIG)
EVAL_BODY = "__tentacle_body=$%s; unset %s; eval \"$__tentacle_body\"" % (
    BODY_VARIABLE, BODY_VARIABLE)
TEXTS = ("root", "ticket", "isolation", "mutex", "wait_for", "grace", "program", "body")
SIGNALS_RESET = [signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGALRM]


class Stopped(Exception):
    """The wait for the mutex ended: cancelled (SIGTERM) or timed out (SIGALRM)."""


def write_all(fd, data):
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:  # a non-blocking channel (not sshd's usual): wait for room
            waiting = selectors.DefaultSelector()
            waiting.register(fd, selectors.EVENT_WRITE)
            waiting.select()
            waiting.close()


def send(kind, step, data):
    write_all(1, HEADER.pack(kind, step, len(data)) + data)


def keep(request, status, out, err):
    """The keeper of one step (a forked child of the helper): the wrapper's work,
    without a shell. Returns when the script's outcome is recorded."""
    state = {"cancelled": False, "waiting": False}

    def on_term(number, frame):
        state["cancelled"] = True
        if state["waiting"]:
            raise Stopped()

    def on_alarm(number, frame):
        if state["waiting"]:
            raise Stopped()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGALRM, on_alarm)

    def tell(line):
        try:
            os.write(status, (line + "\n").encode("utf-8", "surrogateescape"))
        except OSError:
            pass  # the helper is gone (the connection dropped): the record stays

    def say(text):
        try:
            os.write(err, (text + "\n").encode("utf-8", "surrogateescape"))
        except OSError:
            pass

    root, ticket, mutex = request["root"], request["ticket"], request["mutex"]
    if "/" in ticket or ticket in ("", ".", "..") or "/" in mutex or mutex in ("", ".", ".."):
        tell("failed the ticket or the mutex cannot name a file: %r, %r" % (ticket, mutex))
        return
    folder = os.path.join(root, "Work", ticket)
    try:
        os.makedirs(os.path.join(root, "Locks"), 0o700, exist_ok=True)
        lock = os.open(os.path.join(root, "Locks", mutex),
                       os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.makedirs(folder, 0o700, exist_ok=True)
        os.chdir(folder)
    except OSError as error:
        tell("failed %s: %s" % (error.filename, error.strerror))
        return
    try:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
        started = os.open(".started", flags, 0o600)  # once: a ticket never starts twice
    except FileExistsError:
        code = None
        with open(".started", errors="replace") as facts:
            for line in facts:
                words = line.split()
                if len(words) == 2 and words[0] == "exit":
                    code = words[1]
        tell("finished %s" % code if code is not None else "running")
        return
    except OSError as error:
        tell("failed .started: %s" % error.strerror)
        return

    def record(text):
        os.write(started, text.encode())

    me = os.getpid()
    record("grace %s\nwrapper %d\nlock %d\n" % (request["grace"], me, me))
    program, body = request["program"], request["body"]
    environment = dict(os.environ)
    environment.update(request["environment"])
    request["environment"] = None
    if program == "bash" and len(body) <= BODY_IN_ENVIRONMENT:
        # eval'd, as the wrapper does: the body is no argument (ps shows those to all)
        argv = ["bash", "-c", EVAL_BODY, "bash"] + request["arguments"]
        environment[BODY_VARIABLE] = body
    else:
        try:
            with open(".script", "w", encoding="utf-8", errors="surrogateescape") as script:
                script.write(body)
        except OSError as error:
            record("exit 125\n")
            tell("failed .script: %s" % error.strerror)
            return
        argv = [program, ".script"] + request["arguments"]
    body = request["body"] = None
    tell("started")
    wait_for = request["wait_for"]
    try:
        state["waiting"] = True
        if wait_for:
            signal.setitimer(signal.ITIMER_REAL, float(wait_for))
        if state["cancelled"]:
            raise Stopped()
        fcntl.flock(lock, fcntl.LOCK_SH if request["isolation"] == "none" else fcntl.LOCK_EX)
        state["waiting"] = False
    except Stopped:
        state["waiting"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        if os.path.exists(".cancel"):
            say("Cancelled while waiting for the isolation mutex %s" % mutex)
            code = 143
        else:
            say("Timed out after %s s waiting for the isolation mutex %s" % (wait_for, mutex))
            code = 1
        record("exit %d\n" % code)
        tell("exit %d" % code)
        return
    signal.setitimer(signal.ITIMER_REAL, 0)
    try:
        pid = spawn(argv, environment, out, err)
    except OSError as error:
        say("cannot start %s: %s" % (program, error.strerror))
        code = 127 if isinstance(error, FileNotFoundError) else 126
        record("exit %d\n" % code)
        tell("exit %d" % code)
        return
    del environment, argv
    os.close(out)
    os.close(err)
    record("pgid %d\n" % pid)
    killing = False
    if os.path.exists(".cancel"):  # cancelled before the group was recorded
        killing = True
        signal.signal(signal.SIGALRM, lambda number, frame: kill(pid, signal.SIGKILL))
        kill(pid, signal.SIGTERM)
        signal.setitimer(signal.ITIMER_REAL, float(request["grace"]))
    _, how = os.waitpid(pid, 0)
    code = 128 + os.WTERMSIG(how) if os.WIFSIGNALED(how) else os.WEXITSTATUS(how)
    record("exit %d\n" % code)
    tell("exit %d" % code)
    os.close(status)
    os.close(lock)
    if killing:  # what ignored SIGTERM goes at the end of the grace, as on the wrapper's way
        while signal.getitimer(signal.ITIMER_REAL)[0] > 0:
            signal.pause()
    clean()


def kill(group, number):
    try:
        os.killpg(group, number)
    except OSError:
        pass


def spawn(argv, environment, out, err):
    """The script in a process group of its own, stdin /dev/null, SIGPIPE as usual."""
    if hasattr(os, "posix_spawnp"):
        return os.posix_spawnp(
            argv[0], argv, environment,
            file_actions=[(os.POSIX_SPAWN_DUP2, out, 1), (os.POSIX_SPAWN_DUP2, err, 2)],
            setpgroup=0, setsigdef=SIGNALS_RESET,
        )
    ready, told = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready)
            os.setpgid(0, 0)
            os.dup2(out, 1)
            os.dup2(err, 2)
            for number in SIGNALS_RESET:
                signal.signal(number, signal.SIG_DFL)
            os.execvpe(argv[0], argv, environment)
        except OSError as error:
            os.write(told, str(error.errno).encode())
        os._exit(127)
    os.close(told)
    with os.fdopen(ready, "rb") as answer:
        failed = answer.read()
    if failed:
        os.waitpid(pid, 0)
        number = int(failed)
        raise (FileNotFoundError if number == 2 else OSError)(number, os.strerror(number))
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass
    return pid


def clean():
    """The workspace's files go; .started (the outcome) stays."""
    import shutil

    for name in os.listdir("."):
        if name in (".started", ".cancel"):
            continue
        try:
            if os.path.isdir(name) and not os.path.islink(name):
                shutil.rmtree(name, ignore_errors=True)
            else:
                os.unlink(name)
        except OSError:
            pass


class Step:
    def __init__(self, pid, pipes):
        self.pid = pid
        self.pipes = pipes  # STATUS/STDOUT/STDERR -> fd, while open
        self.said = b""
        self.code = b""


def fork_keeper(selector):
    """A keeper forked ahead of its step (the fork is the dearest part of a step: done
    while the helper has nothing else to do), waiting for its request: a length and
    the JSON. It ends at once if the helper ends first."""
    request_read, request_write = os.pipe()
    pipes = [os.pipe() for _ in (STATUS, STDOUT, STDERR)]
    if hasattr(gc, "freeze"):
        gc.freeze()  # the keeper's collections do not copy the helper's pages
    pid = os.fork()
    if pid == 0:
        status = pipes[STATUS][1]
        try:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):  # the channel is the helper's alone
                os.dup2(null, fd)
            os.close(null)
            os.close(request_write)
            for read, _ in pipes:
                os.close(read)
            selector.close()
            request = read_request(request_read)
            if request is not None:
                keep(request, status, pipes[STDOUT][1], pipes[STDERR][1])
        except BaseException as error:  # a bug of the keeper's: the step says so
            try:
                said = "failed the step's keeper failed: %r\n" % error
                os.write(status, said.encode())
            except OSError:
                pass
        finally:
            os._exit(0)
    if hasattr(gc, "unfreeze"):
        gc.unfreeze()  # the helper's own garbage stays collectable
    os.close(request_read)
    for _, write in pipes:
        os.close(write)
    return pid, request_write, [read for read, _ in pipes]


def read_request(fd):
    data = b""
    while len(data) < 4 or len(data) < 4 + struct.unpack(">I", data[:4])[0]:
        chunk = os.read(fd, 65536)
        if not chunk:
            return None
        data += chunk
    return json.loads(data[4:].decode("utf-8", "surrogateescape"))


def start(number, data, steps, selector, spare):
    """Step ``number``: its request checked and handed to the spare keeper."""
    try:
        request = json.loads(data.decode("utf-8", "surrogateescape"))
        for name in TEXTS:
            if not isinstance(request.get(name), str):
                raise ValueError("%s is not a string" % name)
        if not isinstance(request.get("arguments"), list):
            raise ValueError("arguments is not a list")
        if not isinstance(request.get("environment"), dict):
            raise ValueError("environment is not an object")
        if number in steps:
            raise ValueError("step %d runs already" % number)
    except ValueError as error:
        send(b"S", number, ("failed a bad step request: %s" % error).encode())
        send(b"X", number, b"")
        return spare
    if spare is None:
        spare = fork_keeper(selector)
    pid, request_write, reads = spare
    try:
        write_all(request_write, struct.pack(">I", len(data)) + data)
    except OSError:
        pass  # the keeper died: its pipes end, the step says it has no exit code
    os.close(request_write)
    step = Step(pid, {})
    for which, read in enumerate(reads):
        step.pipes[which] = read
        selector.register(read, selectors.EVENT_READ, (which, number))
    steps[number] = step
    return None


def relay(which, number, steps, selector):
    step = steps[number]
    fd = step.pipes[which]
    data = os.read(fd, 65536)
    if data and which == STATUS:
        step.said += data
        *lines, step.said = step.said.split(b"\n")
        for line in lines:
            if line.startswith(b"exit "):
                step.code = line[5:]
            else:
                send(b"S", number, line)
    elif data:
        send(KINDS[which], number, data)
    else:
        selector.unregister(fd)
        os.close(fd)
        del step.pipes[which]
        if not step.pipes:
            send(b"X", number, step.code)
            del steps[number]


def main():
    if sys.version_info < (3, 6):
        sys.exit("python3 is older than 3.6")
    os.umask(0o077)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ, (-1, 0))
    steps = {}
    pending = b""
    send(b"H", 0, ("%s %d.%d" % (HELLO, sys.version_info[0], sys.version_info[1])).encode())
    spare = None
    while True:
        events = selector.select(None if spare else 0)
        if not events and spare is None:
            spare = fork_keeper(selector)  # nothing else to do: the next step's keeper
            continue
        events.sort(key=lambda event: event[0].data[0])
        for key, _ in events:
            which, number = key.data
            if which >= 0:
                relay(which, number, steps, selector)
                continue
            data = os.read(0, 65536)
            if not data:
                return  # the channel ended: the keepers go on, and keep the records
            pending += data
            while len(pending) >= HEADER.size:
                kind, number, length = HEADER.unpack_from(pending)
                if length > LIMIT or kind != b"R":
                    sys.exit("tentacle step helper: a bad frame (%r, %d bytes)" % (kind, length))
                if len(pending) < HEADER.size + length:
                    break
                end = HEADER.size + length
                data, pending = pending[HEADER.size:end], pending[end:]
                spare = start(number, data, steps, selector, spare)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        except ChildProcessError:
            pass


main()
'''
