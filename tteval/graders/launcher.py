"""The sandbox launcher: a script, run as `python -I -S launcher.py <config>` by `tteval.graders.sandbox` (never
imported). It uses only the standard library; the config is the repr of a dict of literals that the harness wrote
(json would cost the launcher 6 ms of imports). It unshares the namespaces, forks the program, builds its minimal
root (pivot_root), drops to the run's uid, sets rlimits, no_new_privs and the seccomp filter, execs the program,
then sums the CPU time of its process tree against the limit. Its own failures are reported as
{"status": "sandbox_error"}; the program's outcome as status/returncode/wall/cpu, one repr'd dict per line on the
report pipe.

Run as `python -I -S launcher.py --zygote FD` it is a warm launcher (a zygote): interpreter started and ctypes
loaded once; for each run it forks a fresh launcher, which then does everything above from scratch (namespaces,
minimal root, uid, seccomp; the program is a fresh exec). A run arrives on the control socket FD as its config
plus its descriptors (stdin, stdout, stderr, report pipe, status pipe[, channel]); the zygote writes the
launcher's pid to the status pipe, then, when it exits, its exit code. EOF on the control socket ends the zygote.
"""
import ctypes, os, resource, select, signal, sys, time


def zygote(control_fd):
    """Fork one launcher per run received on `control_fd`; in the child, return its config (fds rewired)."""
    import socket
    control = socket.socket(fileno=control_fd)
    running = {}  # pidfd -> (pid, status fd)
    while True:
        ready, _, _ = select.select([control, *running], [], [])
        for fd in ready:
            if fd is control:
                continue
            pid, status_fd = running.pop(fd)
            _, status = os.waitpid(pid, 0)
            try:
                os.write(status_fd, f"{os.waitstatus_to_exitcode(status)}\n".encode())
            except OSError:
                pass
            os.close(status_fd)
            os.close(fd)
        if control not in ready:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(control, 1 << 20, 6)
        except OSError:
            os._exit(0)
        if not message:
            os._exit(0)
        if len(fds) not in (5, 6):
            for fd in fds:
                os.close(fd)
            continue
        me = os.getpid()
        pid = os.fork()
        if pid == 0:
            control.detach()  # closed below with the rest; the object must not close a reused number later
            config = eval(message.decode(), {"__builtins__": {}})
            stdin, stdout, stderr, report_fd, status_fd, *channel = fds
            os.setsid()
            for i, fd in enumerate((stdin, stdout, stderr)):
                os.dup2(fd, i)
            target = config["channel_fd"]  # the program's source names its channel by the harness's number
            if channel:
                if report_fd == target:
                    report_fd = os.dup(report_fd)
                if channel[0] != target:
                    os.dup2(channel[0], target)
                os.set_inheritable(target, True)
            config["report_fd"], config["harness_pid"] = report_fd, me
            keep = sorted({0, 1, 2, report_fd, *([target] if channel else [])})
            for lo, hi in zip(keep, keep[1:] + [os.sysconf("SC_OPEN_MAX")]):
                os.closerange(lo + 1, hi)  # the control socket, status pipes, other runs' descriptors
            os.chdir(config["root_dir"])
            return config
        for fd in fds:
            if fd != fds[4]:
                os.close(fd)
        os.write(fds[4], f"{pid}\n".encode())
        running[os.pidfd_open(pid)] = (pid, fds[4])


cfg = zygote(int(sys.argv[2])) if sys.argv[1] == "--zygote" else eval(sys.argv[1], {"__builtins__": {}})
REPORT = cfg["report_fd"]
os.set_inheritable(REPORT, False)


def report(**items):
    os.write(REPORT, (repr(items) + "\n").encode())


libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.syscall.restype = ctypes.c_long
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = (
    0x00020000, 0x08000000, 0x10000000, 0x20000000, 0x40000000)
MNT_DETACH, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 2, 22, 2
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = (
    1, 2, 4, 8, 32, 4096, 16384, 1 << 18)
SYS_MOUNT_SETATTR, AT_FDCWD, AT_RECURSIVE, MOUNT_ATTR_RDONLY = 442, -100, 0x8000, 1


class MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def check(rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(source, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()
    check(libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)), f"mount {target}")


prctl = getattr(libc, "prctl", lambda *args: 0)  # Linux only; plain mode elsewhere runs without it
prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
if os.getppid() != cfg["harness_pid"]:
    os._exit(111)
namespaces = cfg["mode"] in ("namespaces", "userns")
if namespaces:
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | (0 if cfg["network"] else CLONE_NEWNET)
    if cfg["mode"] == "userns":
        flags |= CLONE_NEWUSER
    outer_uid, outer_gid = os.getuid(), os.getgid()
    if libc.unshare(flags) != 0:
        report(status="sandbox_error", error="unshare: " + os.strerror(ctypes.get_errno()))
        os._exit(0)
    if cfg["mode"] == "userns":  # map only our own uid/gid, to themselves
        for name, text in (("setgroups", "deny"), ("uid_map", f"{outer_uid} {outer_uid} 1"),
                           ("gid_map", f"{outer_gid} {outer_gid} 1")):
            with open(f"/proc/self/{name}", "w") as fh:
                fh.write(text)
with open(cfg["program"], "rb") as fh:
    source = fh.read()


def remount_read_only():
    """Bind-remount every mount read-only, keeping its nosuid/nodev/noexec flags (a user namespace must)."""
    keep = {"nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC}
    with open("/proc/self/mountinfo") as fh:
        entries = [line.split() for line in fh]
    for fields_ in entries:
        target = fields_[4].encode().decode("unicode_escape")
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        for option in fields_[5].split(","):
            flags |= keep.get(option, 0)
        try:
            mount(None, target, None, flags)
        except OSError:
            pass  # best effort: the uid drop (root mode) still guards what cannot be remounted


def build_filesystem():
    """In the new mount namespace: a tmpfs root holding only the system dirs, the interpreter and a few devices,
    all read-only; private tmpfs /tmp and /dev/shm; a fresh /proc; then pivot_root into it (the host's tree,
    its datasets, project checkout and socket files, is no longer reachable)."""
    plan, arch = cfg["root"], cfg["arch"]
    if arch is None:
        raise OSError(0, "no pivot_root syscall number for this machine")
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    root = cfg["root_dir"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=755")
    for d in ("tmp", "var/tmp", "dev/shm", "proc"):
        os.makedirs(os.path.join(root, d), mode=0o755, exist_ok=True)
    for name in plan["devices"]:
        host = "/dev/" + name
        if os.path.exists(host):
            open(os.path.join(root, "dev", name), "w").close()
            mount(host, os.path.join(root, "dev", name), None, MS_BIND)
    for path in plan["binds"]:
        target = root + path
        os.makedirs(target, mode=0o755, exist_ok=True)
        mount(path, target, None, MS_BIND | MS_REC)
    for path, dest in plan["links"]:
        os.symlink(dest, root + path)
    for path in plan["hide"]:
        if os.path.isdir(root + path):
            mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV, "size=4k,mode=755")
    attr = MountAttr(MOUNT_ATTR_RDONLY, 0, 0, 0)
    if libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, root.encode(), AT_RECURSIVE, ctypes.byref(attr),
                    ctypes.sizeof(attr)) != 0:
        remount_read_only()  # kernels before 5.12 have no mount_setattr: remount each mount point instead
    size = f"size={cfg['tmpfs_mb']}m,mode=1777"
    for d in ("tmp", "var/tmp", "dev/shm"):
        mount("tmpfs", os.path.join(root, d), "tmpfs", MS_NOSUID | MS_NODEV, size)
    for p in cfg["tmp_keep"]:  # the interpreter's own folders under a tmp dir, bound back read-only
        os.makedirs(root + p, mode=0o755, exist_ok=True)
        mount(p, root + p, None, MS_BIND | MS_REC)
        mount(None, root + p, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    for path in plan["hide"]:  # hidden folders inside those (a venv under /tmp): hidden again, read-only
        if any(path.startswith(p + os.sep) for p in cfg["tmp_keep"]) and os.path.isdir(root + path):
            mount("tmpfs", root + path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k,mode=755")
    mount("proc", os.path.join(root, "proc"), "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    # SysV shared memory of this IPC namespace: at most one tmpfs size in all (detached segments escape RLIMIT_AS)
    shm_bytes = cfg["tmpfs_mb"] << 20
    for name, value in (("shmmax", shm_bytes), ("shmall", shm_bytes // os.sysconf("SC_PAGE_SIZE"))):
        try:
            with open(os.path.join(root, "proc/sys/kernel", name), "w") as fh:
                fh.write(str(value))
        except OSError:
            pass  # best effort (a user namespace may not own these)
    os.chdir(root)
    check(libc.syscall(arch["pivot_root"], b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


def deny_memfd():
    """seccomp: memfd_create fails with EPERM (its memory escapes RLIMIT_AS, and this machine may have no
    cgroup v2 memory controller to bound it); other ABIs (x32, i386) get ENOSYS for every call."""
    import struct
    arch = cfg["arch"]
    if arch is None:
        return
    ret_errno = 0x00050000
    code = [(0x20, 0, 0, 4), (0x15, 1, 0, arch["audit_arch"]), (0x06, 0, 0, ret_errno | 38), (0x20, 0, 0, 0),
            (0x15, 2, 0, arch["memfd_create"]), (0x35, 1, 0, arch["x32_bit"] or 0xFFFFFFFF),
            (0x06, 0, 0, 0x7FFF0000), (0x06, 0, 0, ret_errno | 1)]
    buf = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *ins) for ins in code))

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    prog = Prog(len(code), ctypes.addressof(buf))
    check(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0), "seccomp")


def child():
    os.setsid()
    workdir, uid = cfg["workdir"], cfg["uid"]
    if namespaces:
        build_filesystem()
        os.makedirs(workdir, mode=0o700, exist_ok=True)
        with open(os.path.join(workdir, "main.py"), "wb") as fh:
            fh.write(source)
        if uid is not None:
            os.chown(os.path.join(workdir, "main.py"), uid, uid)
            os.chown(workdir, uid, uid)
    for name, (soft, hard) in cfg["rlimits"].items():
        resource.setrlimit(getattr(resource, name), (soft, hard))
    if uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    check(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if namespaces:
        deny_memfd()
    os.chdir(workdir)
    os.execve(cfg["exe"], cfg["argv"], cfg["env"])


err_r, err_w = os.pipe()
# The host's /proc, opened before the program's mount namespace (which we share) gets its own /proc on top; the
# launcher reads the program's process tree through it. Close-on-exec, so the program never holds it.
PROC = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.close(err_r)
        child()
    except BaseException as exc:
        try:
            os.write(err_w, f"{type(exc).__name__}: {exc}".encode()[:2000])
        finally:
            os._exit(127)
os.close(err_w)
if cfg["channel_fd"] is not None:
    os.close(cfg["channel_fd"])  # the program holds the only copy: its end closes when it ends
TICK = os.sysconf("SC_CLK_TCK")


def read_proc(path):
    fd = os.open(path, os.O_RDONLY, dir_fd=PROC)
    try:
        return os.read(fd, 65536)
    finally:
        os.close(fd)


def list_proc(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY, dir_fd=PROC)
    try:
        return os.listdir(fd)
    finally:
        os.close(fd)


try:
    HAVE_CHILDREN = read_proc(f"{os.getpid()}/task/{os.getpid()}/children") is not None
except OSError:
    HAVE_CHILDREN = False


def kill_program():
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except OSError:
            pass


def process_tree():
    """Host pids of the program and its descendants (zombies included: they keep their CPU times)."""
    if not HAVE_CHILDREN:  # no /proc/PID/task/TID/children: the program's session instead
        found = []
        for name in list_proc("."):
            if name.isdigit():
                try:
                    data = read_proc(f"{name}/stat")
                except OSError:
                    continue
                if int(data[data.rindex(b")") + 2:].split()[3]) == pid:
                    found.append(int(name))
        return found
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for tid in list_proc(f"{p}/task"):
                todo.extend(int(c) for c in read_proc(f"{p}/task/{tid}/children").split())
        except (OSError, ValueError):
            pass
    return found


seen, gone_cpu = {}, 0.0  # pid -> (parent pid, CPU s); CPU of processes that left the tree unreaped by it


def tree_cpu():
    """CPU seconds of the program's whole process tree: each process's own time plus its reaped children's;
    a process that left the tree without its parent reaping it keeps the time it had when last seen."""
    global gone_cpu
    now = {}
    for p in process_tree():
        try:
            data = read_proc(f"{p}/stat")
            f = data[data.rindex(b")") + 2:].split()
            now[p] = (int(f[1]), (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) / TICK)
        except (OSError, ValueError, IndexError):
            continue
    for p, (parent, cpu) in seen.items():
        if p not in now and parent not in now:
            gone_cpu += cpu
    seen.clear()
    seen.update(now)
    return gone_cpu + sum(cpu for _, cpu in now.values())


try:
    waker = os.pidfd_open(pid)  # readable when the program exits: no polling delay at the end
except (AttributeError, OSError):
    waker = None
fired, peak_cpu, next_poll = "", 0.0, 0.0
while True:
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if done:
        break
    elapsed = time.perf_counter() - start
    if not fired and (elapsed >= next_poll or elapsed >= cfg["wall_s"]):
        next_poll = elapsed + cfg["poll_s"]
        peak_cpu = max(peak_cpu, tree_cpu())
        fired = "cpu" if peak_cpu > cfg["cpu_s"] else "wall" if elapsed >= cfg["wall_s"] else ""
        if fired:
            kill_program()
    pause = 1.0 if fired else max(0.001, min(next_poll, cfg["wall_s"]) - elapsed)
    if waker is not None:
        select.select([waker], [], [], pause)
    else:
        time.sleep(min(pause, 0.01))
wall = time.perf_counter() - start
if not namespaces:
    kill_program()
setup_error = os.read(err_r, 4096).decode(errors="replace")
if setup_error:
    report(status="sandbox_error", error="sandbox setup failed: " + setup_error)
else:
    rc = os.waitstatus_to_exitcode(status)
    cpu = max(peak_cpu, usage.ru_utime + usage.ru_stime)
    report(status="done", returncode=rc, wall=wall, cpu=cpu, fired=fired)
