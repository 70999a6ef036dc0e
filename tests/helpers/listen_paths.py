"""listen() by paths the native syscall's tracepoint does not see:
io_uring (IORING_OP_LISTEN, Linux 6.11+) and the 32-bit syscall (int 0x80,
which a 64-bit process may use where the kernel has IA32 emulation). Raw
io_uring_setup/io_uring_enter and a few bytes of machine code over ctypes:
Python has neither, and this keeps the helper one file.

usage: listen_paths.py VIA MODE
  VIA:  uring (issued inline), uring-async (IOSQE_ASYNC: an io-wq worker
        thread), uring-skip (IOSQE_CQE_SKIP_SUCCESS: no completion
        posted), compat (int 0x80)
  MODE: bound (127.0.0.1:0), unbound (no bind(): the kernel picks), failed
        (two SO_REUSEADDR sockets on one port, the second's listen fails
        with EADDRINUSE), bound-after-leaving (the socket made here, then
        this process moves to a new user and network namespace, which
        needs no privilege, then binds it to 127.0.0.1:0 and listens: the
        listener is in the namespace it was made in)
Prints "port N" (or "failed ERRNO port N"), waits for a line on stdin,
closes, prints "closed", waits for another line.
"""
import ctypes, errno, mmap, socket, struct, sys

NR_IO_URING_SETUP, NR_IO_URING_ENTER = 425, 426
IORING_OP_LISTEN = 57
IOSQE_ASYNC = 1 << 4
IOSQE_CQE_SKIP_SUCCESS = 1 << 6
IORING_ENTER_GETEVENTS = 1
IORING_OFF_SQ_RING, IORING_OFF_CQ_RING, IORING_OFF_SQES = 0, 0x8000000, 0x10000000

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class Ring:
    def __init__(self, entries=4):
        params = ctypes.create_string_buffer(120)
        fd = libc.syscall(NR_IO_URING_SETUP, ctypes.c_uint(entries), params)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "io_uring_setup")
        self.fd = fd
        p = params.raw
        sq_entries, cq_entries = struct.unpack_from("II", p, 0)
        # struct io_sqring_offsets at 40, io_cqring_offsets at 80.
        (self.sq_head, self.sq_tail, self.sq_mask, _, _, _, sq_array) = struct.unpack_from("7I", p, 40)
        (self.cq_head, self.cq_tail, self.cq_mask, _, _, cqes) = struct.unpack_from("6I", p, 80)
        self.sq_array, self.cqes = sq_array, cqes
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        self.sq = mmap.mmap(fd, sq_array + sq_entries * 4, mmap.MAP_SHARED, prot, offset=IORING_OFF_SQ_RING)
        self.cq = mmap.mmap(fd, cqes + cq_entries * 16, mmap.MAP_SHARED, prot, offset=IORING_OFF_CQ_RING)
        self.sqes = mmap.mmap(fd, sq_entries * 64, mmap.MAP_SHARED, prot, offset=IORING_OFF_SQES)

    def listen(self, sock, flags=0):
        tail = struct.unpack_from("I", self.sq, self.sq_tail)[0]
        index = tail & struct.unpack_from("I", self.sq, self.sq_mask)[0]
        sqe = bytearray(64)
        # opcode, flags, ioprio, fd; len = backlog; user_data = 7
        struct.pack_into("BBHi", sqe, 0, IORING_OP_LISTEN, flags, 0, sock.fileno())
        struct.pack_into("I", sqe, 24, 128)
        struct.pack_into("Q", sqe, 32, 7)
        self.sqes[index * 64:(index + 1) * 64] = bytes(sqe)
        struct.pack_into("I", self.sq, self.sq_array + index * 4, index)
        struct.pack_into("I", self.sq, self.sq_tail, tail + 1)
        # A skipped completion never comes: submit without waiting (the
        # listen is issued inline, done when the call returns).
        skip = flags & IOSQE_CQE_SKIP_SUCCESS
        wait, enter_flags = (0, 0) if skip else (1, IORING_ENTER_GETEVENTS)
        n = libc.syscall(NR_IO_URING_ENTER, self.fd, 1, wait, enter_flags, None, 0)
        if n < 0:
            raise OSError(ctypes.get_errno(), "io_uring_enter")
        if skip:
            return 0
        head = struct.unpack_from("I", self.cq, self.cq_head)[0]
        at = self.cqes + (head & struct.unpack_from("I", self.cq, self.cq_mask)[0]) * 16
        user_data, res = struct.unpack_from("Qi", self.cq, at)
        struct.pack_into("I", self.cq, self.cq_head, head + 1)
        assert user_data == 7, user_data
        return res


def compat_listen():
    """listen(fd, backlog) through int 0x80 (ia32 syscall 363): push rbx;
    mov eax, 363; mov ebx, edi; mov ecx, esi; int 0x80; pop rbx; ret."""
    code = bytes([0x53, 0xB8, 0x6B, 0x01, 0x00, 0x00, 0x89, 0xFB, 0x89, 0xF1,
                  0xCD, 0x80, 0x5B, 0xC3])
    prot = mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC
    page = mmap.mmap(-1, 4096, prot=prot)
    page.write(code)
    fn = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_int)(
        ctypes.addressof(ctypes.c_char.from_buffer(page)))
    return lambda sock: fn(sock.fileno(), 128), page


via, mode = sys.argv[1], sys.argv[2]
if via == "compat":
    listen, _page = compat_listen()
else:
    ring = Ring()
    flags = {"uring": 0, "uring-async": IOSQE_ASYNC, "uring-skip": IOSQE_CQE_SKIP_SUCCESS}[via]
    listen = lambda sock: ring.listen(sock, flags)
keep = []
if mode == "failed":
    a = socket.socket(); a.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    a.bind(("127.0.0.1", 0)); port = a.getsockname()[1]
    b = socket.socket(); b.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    b.bind(("127.0.0.1", port))
    a.listen()
    res = listen(b)
    print("failed", errno.errorcode.get(-res, res), "port", port, flush=True)
    keep = [a, b]
else:
    s = socket.socket()
    if mode == "bound-after-leaving":
        CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
        assert libc.unshare(CLONE_NEWUSER | CLONE_NEWNET) == 0
    if mode in ("bound", "bound-after-leaving"):
        s.bind(("127.0.0.1", 0))
    res = listen(s)
    if res != 0:
        print("error", errno.errorcode.get(-res, res), flush=True)
        sys.exit(1)
    print("port", s.getsockname()[1], flush=True)
    keep = [s]
sys.stdin.readline()
for s in keep:
    s.close()
print("closed", flush=True)
sys.stdin.readline()
