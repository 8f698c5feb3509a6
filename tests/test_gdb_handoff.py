"""The gdb transport's two hand-offs (a write watchpoint on the firmware's
doorbell, or a breakpoint on its NOP) and the packet layer under them: the
fallbacks for targets and firmware without the watchpoint, and, against a
scripted stub, the protocol rules a real target holds us to (nothing may
reach QEMU after a continue; no-ack mode when offered; no PC write for a
target that stops after the watched store)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading

import armvcpu
import pytest
from armvcpu import ExitKind, Hypervisor, _core
from armvcpu.session.gdbstub import GdbRemote, _expand_rle, _unescape
from armvcpu.session.transport import RECORD_SIZE, GdbTransport

MASK64 = (1 << 64) - 1


def fold(values: list[int]) -> int:
    checksum = 0
    for v in values:
        checksum = (checksum * 31 + v) & MASK64
    return checksum


def run_hypercalls(hv: Hypervisor, guest: armvcpu.Guest) -> list[armvcpu.Exit]:
    """The example guest's eight hypercalls answered, then its report."""
    hv.load(guest)
    answers = [0x1000 + i for i in range(8)]
    exits = []
    for exit in hv.exits():
        exits.append(exit)
        if exit.kind == ExitKind.Hypercall and exit.reason.nr == 1:
            exit.resume(x0=answers[exit.reason.args[0]])
    assert [e.kind for e in exits] == [ExitKind.Hypercall] * 9 + [ExitKind.SystemDown]
    assert exits[8].reason.args[0] == fold(answers)
    assert [e.seq for e in exits] == list(range(1, 11))
    return exits


@pytest.mark.parametrize("handoff", ["watchpoint", "breakpoint"])
def test_both_handoffs_run_the_example_guest(handoff, hypercalls_guest, no_leaked_qemu):
    with Hypervisor(transport="gdb", handoff=handoff) as hv:
        assert isinstance(hv.transport, GdbTransport)
        assert hv.transport.mode == handoff
        run_hypercalls(hv, hypercalls_guest)


def test_auto_takes_the_watchpoint_with_qemu(hypercalls_guest, no_leaked_qemu):
    with Hypervisor(transport="gdb") as hv:
        assert isinstance(hv.transport, GdbTransport)
        assert hv.transport.mode == "watchpoint"
        run_hypercalls(hv, hypercalls_guest)
        # QEMU, like Arm, stops before the watched store: the host moves the PC.
        assert hv.transport.resume_pc == hv.firmware.host_doorbell_store + 4


def test_bad_handoff_name():
    with pytest.raises(ValueError, match="handoff"):
        Hypervisor(transport="gdb", handoff="both")  # type: ignore[arg-type]


def test_firmware_without_the_doorbell_falls_back_to_the_breakpoint(
    tmp_path, hypercalls_guest, no_leaked_qemu
):
    """An image that predates the doorbell (here: the symbols stripped)."""
    objcopy = shutil.which("aarch64-linux-gnu-objcopy")
    if objcopy is None:
        pytest.skip("aarch64-linux-gnu-objcopy is not installed")
    old = tmp_path / "old-firmware.elf"
    subprocess.run(
        [objcopy, "--strip-symbol=armvcpu_host_doorbell",
         "--strip-symbol=armvcpu_host_doorbell_store", str(armvcpu.firmware_path()), str(old)],
        check=True,
    )  # fmt: skip
    with Hypervisor(transport="gdb", firmware=old) as hv:
        assert hv.firmware.host_doorbell is None
        assert isinstance(hv.transport, GdbTransport)
        assert hv.transport.mode == "breakpoint"
        run_hypercalls(hv, hypercalls_guest)
    with pytest.raises(armvcpu.GdbProtocolError, match="no armvcpu_host_doorbell"):
        Hypervisor(transport="gdb", firmware=old, handoff="watchpoint").start()


class RefusingProxy:
    """A TCP relay to a GDB remote target that answers some packets itself
    with an empty reply ("not supported"), like a stub without them."""

    def __init__(self, upstream: tuple[str, int], refuse: tuple[bytes, ...]) -> None:
        self.refuse = refuse
        self.refused: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._upstream = upstream
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        client, _ = self._listener.accept()
        upstream = socket.create_connection(self._upstream)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        buf = b""
        while chunk := client.recv(65536):
            buf += chunk
            while buf:
                if buf[:1] != b"$":
                    cut = buf.find(b"$")
                    cut = len(buf) if cut < 0 else cut
                    upstream.sendall(buf[:cut])
                    buf = buf[cut:]
                    continue
                end = buf.find(b"#")
                if end < 0 or len(buf) < end + 3:
                    break
                packet, buf = buf[: end + 3], buf[end + 3 :]
                if packet[1:end].startswith(self.refuse):
                    self.refused.append(packet[1:end])
                    client.sendall(b"+$#00")
                else:
                    upstream.sendall(packet)
        upstream.close()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        dst.close()


def test_target_without_watchpoints_gets_the_breakpoint(remote_target, hypercalls_guest):
    """A target that does not support Z2 (an empty reply): auto falls back to
    the breakpoint and the session works as before."""
    address, qemu = remote_target
    host, port = address.rsplit(":", 1)
    proxy = RefusingProxy((host, int(port)), refuse=(b"Z2", b"z2"))
    with Hypervisor.attach(proxy.address) as hv:
        assert isinstance(hv.transport, GdbTransport)
        assert hv.transport.mode == "breakpoint"
        run_hypercalls(hv, hypercalls_guest)
    assert proxy.refused and proxy.refused[0].startswith(b"Z2,")
    assert qemu.wait(10) == 0


def test_detaching_mid_run_leaves_the_target_running(remote_target, hypercalls_guest):
    """Closing a remote session takes the watchpoint with it (QEMU drops it
    on detach): the firmware answers the rest itself and the guest ends."""
    address, qemu = remote_target
    with Hypervisor.attach(address) as hv:
        hv.load(hypercalls_guest)
        first = next(iter(hv.exits()))
        assert first.kind == ExitKind.Hypercall
        first.resume(x0=1)
    assert qemu.wait(10) == 0


def test_asking_for_the_watchpoint_from_a_target_without_it(remote_target):
    address, _qemu = remote_target
    host, port = address.rsplit(":", 1)
    proxy = RefusingProxy((host, int(port)), refuse=(b"Z2",))
    with pytest.raises(armvcpu.GdbProtocolError, match="refused a write watchpoint"):
        Hypervisor.attach(proxy.address, handoff="watchpoint").start()


@pytest.mark.parametrize("handoff", ["watchpoint", "breakpoint"])
def test_smp_guest_under_both_handoffs(handoff, no_leaked_qemu):
    """Several CPUs: the PC write goes to the CPU that stopped (Hg)."""
    from .test_smp import SMP_GUEST

    with Hypervisor(transport="gdb", smp=2, handoff=handoff) as hv:
        hv.load(armvcpu.Guest.from_asm(SMP_GUEST))
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
    hello = next(e for e in exits if e.kind == ExitKind.Hypercall and e.reason.nr == 7)
    report = next(e for e in exits if e.kind == ExitKind.Hypercall and e.reason.nr == 3)
    assert hello.vcpu_id == 1 and hello.slot == 1 and report.vcpu_id == 0
    assert report.reason.args[:3] == (0, 1, MASK64 - 1)
    assert exits[-1].kind == ExitKind.SystemDown


def test_auto_takes_the_watchpoint_with_several_cpus(no_leaked_qemu):
    """With more than one CPU auto takes the watchpoint too (stops QEMU does
    not report are found in the records: see test_gdb_concurrent_exits.py),
    and the SMP guest runs to its end under it."""
    from .test_smp import SMP_GUEST

    with Hypervisor(transport="gdb", smp=2) as hv:
        assert isinstance(hv.transport, GdbTransport)
        assert (hv.transport.requested_mode, hv.transport.mode) == ("auto", "watchpoint")
        hv.load(armvcpu.Guest.from_asm(SMP_GUEST))
        exits = hv.run(lambda e: 0 if e.kind == ExitKind.Hypercall else None)
    assert {e.vcpu_id for e in exits} == {0, 1}
    assert exits[-1].kind == ExitKind.SystemDown


# -- a scripted stub --------------------------------------------------------------

RECORDS = 0x4022_0000
HANDOFF = 0x4020_7000
STORE = HANDOFF + 8
DOORBELL = 0x4020_8000
PC_REG = 32
TARGET_XML = (
    '<?xml version="1.0"?><target><feature name="org.gnu.gdb.aarch64.core">'
    '<reg name="x0" bitsize="64" regnum="0"/><reg name="pc" bitsize="64" regnum="32"/>'
    "</feature></target>"
)


def run_length_encode(data: bytes) -> bytes:
    """GDB's run-length encoding (Remote Protocol: Overview): a run of a
    character c is c, '*', then the count of further repeats plus 29 as one
    printable character; counts 6 and 7 would be '#' and '$', so a run that
    long is cut at 5, and no count character may exceed 126 ('~')."""
    out = bytearray()
    i = 0
    while i < len(data):
        c = data[i]
        run = 1
        while i + run < len(data) and data[i + run] == c:
            run += 1
        i += run
        out.append(c)
        more = run - 1
        while more:
            if more < 3:  # 'c*n' is no shorter than up to two plain repeats
                out += bytes([c]) * more
                break
            count = min(more, 126 - 29)
            count = 5 if count in (6, 7) else count
            out += b"*" + bytes([count + 29])
            more -= count
            if more:
                out.append(c)
                more -= 1
    return bytes(out)


def escape(data: bytes, also: bytes = b"") -> bytes:
    """GDB's binary escaping: '#', '$', '}' (and '*' in a stub's reply)
    always, any other byte as a stub likes; each as 0x7d then the byte XOR 0x20."""
    out = bytearray()
    for b in data:
        if b in b"#$}*" or b in also:
            out += bytes([0x7D, b ^ 0x20])
        else:
            out.append(b)
    return bytes(out)


class ScriptedTarget(threading.Thread):
    """A GDB remote stub for one CPU that makes `exits` exits, then exits.

    It is strict where real targets are: after each reply it waits for the
    client's '+' (as gdbserver and OpenOCD do while acks are on); a byte that
    arrives while the CPU runs is a violation (QEMU would stop the CPU), and
    so is a continue from where the CPU would hit its breakpoint or
    watchpoint again.
    """

    def __init__(self, sock: socket.socket, *, exits: int = 3, no_ack: bool = False,
                 watchpoints: bool = True, stop_after_store: bool = False,
                 encode: bool = False) -> None:  # fmt: skip
        super().__init__(daemon=True)
        self.sock = sock
        self.encode = encode  # run-length encode hex replies, escape the binary qXfer reply
        self.encoded_replies: list[bytes] = []
        self.exits = exits
        self.offer_no_ack = no_ack
        self.watchpoints = watchpoints
        self.stop_after_store = stop_after_store
        self.no_ack = False
        self.memory = bytearray(_core.ExitRecord().to_bytes())
        self.pc = 0x4020_0000
        self.seq = 0
        self.watch: int | None = None
        self.breakpoint: int | None = None
        self.violations: list[str] = []
        self.packets: list[bytes] = []
        self.chunks: list[bytes] = []  # what each read brought
        self.acks_after_no_ack = 0
        self.buf = b""

    def getc(self) -> int:
        if not self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self.chunks.append(chunk)
            self.buf = chunk
        c, self.buf = self.buf[0], self.buf[1:]
        return c

    def send(self, payload: bytes, *, await_ack: bool = True) -> None:
        self.sock.sendall(b"$%s#%02x" % (payload, sum(payload) & 0xFF))
        if await_ack and not self.no_ack:
            c = self.getc()  # the client's ack of this reply
            if c != 0x2B:
                self.violations.append(f"no ack for {payload[:20]!r}, got {chr(c)!r}")
                self.buf = bytes([c]) + self.buf

    def run(self) -> None:
        try:
            while True:
                c = self.getc()
                if c == 0x2B and self.no_ack:
                    self.acks_after_no_ack += 1
                if c != 0x24:  # '$'
                    continue
                payload = b""
                while (c := self.getc()) != 0x23:  # '#'
                    payload += bytes([c])
                self.getc(), self.getc()  # the checksum
                if not self.no_ack:
                    self.sock.sendall(b"+")
                self.packets.append(payload)
                if payload == b"c":
                    if self.buf:
                        self.violations.append(f"bytes after the continue: {self.buf!r}")
                        self.buf = b""
                    if not self.run_cpu():
                        return
                else:
                    self.handle(payload)
        except (OSError, EOFError):
            return

    def handle(self, p: bytes) -> None:
        if p.startswith(b"qSupported"):
            self.send(b"PacketSize=1000" + (b";QStartNoAckMode+" if self.offer_no_ack else b""))
        elif p == b"QStartNoAckMode":
            self.send(b"OK")  # the client acks this OK; nothing after it
            self.no_ack = True
        elif p == b"?":
            self.send(b"S05")
        elif p.startswith(b"qXfer:features:read:target.xml:"):
            self.send(
                b"l"
                + (escape(TARGET_XML.encode(), b'<>"=') if self.encode else TARGET_XML.encode())
            )
        elif p.startswith(b"Z2,"):
            if self.watchpoints:
                self.watch = int(p[3:].split(b",")[0], 16)
                self.send(b"OK")
            else:
                self.send(b"")
        elif p.startswith(b"Z0,"):
            self.breakpoint = int(p[3:].split(b",")[0], 16)
            self.send(b"OK")
        elif p.startswith(b"m"):
            addr, length = (int(x, 16) for x in p[1:].split(b","))
            self.send_hex(self.read(addr, length))
        elif p.startswith(b"M"):
            where, data = p[1:].split(b":")
            addr = int(where.split(b",")[0], 16)
            self.write(addr, bytes.fromhex(data.decode()))
            self.send(b"OK")
        elif p.startswith(b"p"):
            self.send_hex(self.pc.to_bytes(8, "little"))
        elif p.startswith(b"P"):
            number, value = p[1:].split(b"=")
            assert int(number, 16) == PC_REG
            self.pc = int.from_bytes(bytes.fromhex(value.decode()), "little")
            self.send(b"OK")
        elif p.startswith(b"Hg"):
            self.send(b"OK")
        else:
            self.send(b"")

    def send_hex(self, data: bytes) -> None:
        reply = data.hex().encode()
        if self.encode:
            reply = run_length_encode(reply)
            self.encoded_replies.append(reply)
        self.send(reply)

    def read(self, addr: int, length: int) -> bytes:
        off = addr - RECORDS
        if off >= 0 and off + length <= RECORD_SIZE:
            return bytes(self.memory[off : off + length])
        return bytes(length)

    def write(self, addr: int, data: bytes) -> None:
        off = addr - RECORDS
        assert off >= 0 and off + len(data) <= RECORD_SIZE, f"write outside the record: {addr:#x}"
        self.memory[off : off + len(data)] = data

    def run_cpu(self) -> bool:
        """The CPU runs to its next exit; False once it has powered off."""
        if self.seq and self.pc in (self.breakpoint, self.watch_pc_before()):
            self.violations.append(f"continued at {self.pc:#x}: the CPU stops there again")
        # Running: anything the client sends now would stop QEMU's CPU.
        self.sock.settimeout(0.05)
        try:
            stray = self.sock.recv(65536)
            if stray:
                self.violations.append(f"bytes while running: {stray!r}")
                self.buf += stray
        except TimeoutError:
            pass
        self.sock.settimeout(None)
        if self.seq == self.exits:
            self.send(b"W00", await_ack=False)  # and gone
            return False
        self.seq += 1
        self.memory[16:24] = self.seq.to_bytes(8, "little")
        self.memory[36:40] = bytes(4)  # the firmware presets Default
        if self.watch is not None:
            self.pc = STORE + 4 if self.stop_after_store else STORE
            self.send(b"T05thread:01;watch:%x;" % self.watch)
        else:
            self.pc = HANDOFF
            self.send(b"T05thread:01;swbreak:;")
        return True

    def watch_pc_before(self) -> int | None:
        return STORE if self.watch is not None and not self.stop_after_store else None


def scripted_session(mode: str = "auto", **target_args) -> tuple[ScriptedTarget, GdbTransport]:
    ours, theirs = socket.socketpair()
    target = ScriptedTarget(theirs, **target_args)
    target.start()
    gdb = GdbRemote(ours, timeout=5)
    gdb.handshake()
    transport = GdbTransport(gdb, RECORDS, HANDOFF, doorbell=DOORBELL, doorbell_store=STORE,
                             mode=mode)  # type: ignore[arg-type]  # fmt: skip
    transport.prepare()
    return target, transport


def answer_all(transport: GdbTransport) -> list[int]:
    """Answer every exit (Resume, x0 = seq) until the target powers off."""
    seqs = []
    while True:
        try:
            found = transport.wait_record(5)
        except armvcpu.TargetConnectionError:
            return seqs
        assert found is not None
        slot, raw = found
        record = _core.ExitRecord.from_bytes(raw)
        seqs.append(record.seq)
        frame = record.frame
        frame.set_gpr(0, record.seq)
        record.frame = frame
        record.action = _core.HostAction.Resume
        transport.answer(slot, record, True)


@pytest.mark.parametrize(
    ("mode", "target_args", "expected"),
    [
        ("auto", {}, "watchpoint"),
        ("auto", {"watchpoints": False}, "breakpoint"),
        ("breakpoint", {}, "breakpoint"),
        ("auto", {"no_ack": True}, "watchpoint"),
        ("auto", {"no_ack": True, "watchpoints": False}, "breakpoint"),
    ],
)
def test_scripted_target_follows_the_rules(mode, target_args, expected):
    target, transport = scripted_session(mode, **target_args)
    assert transport.mode == expected
    assert answer_all(transport) == [1, 2, 3]
    target.join(5)
    assert target.violations == []
    # The answers arrived: action Resume, x0 = seq of the last exit.
    assert int.from_bytes(target.memory[36:40], "little") == int(_core.HostAction.Resume)
    assert int.from_bytes(target.memory[144:152], "little") == 3
    assert transport.gdb.no_ack == target_args.get("no_ack", False)


def test_no_ack_mode_sends_the_answer_and_the_continue_in_one_write():
    target, transport = scripted_session(no_ack=True)
    answer_all(transport)
    target.join(5)
    assert target.acks_after_no_ack == 0
    # Each answer: the record's span, the PC and the continue, one write.
    writes = [c for c in target.chunks if c.startswith(b"$M")]
    assert len(writes) == 3
    for w in writes:
        assert b"$P20=" in w and w.endswith(b"$c#63") and b"+" not in w


def test_acked_mode_sends_the_answer_and_the_continue_in_one_write():
    """The replies' '+' go with the requests, so nothing follows the c."""
    target, transport = scripted_session()
    answer_all(transport)
    target.join(5)
    assert target.violations == []
    writes = [c for c in target.chunks if c.startswith(b"$M")]
    assert len(writes) == 3
    for w in writes:
        assert b"+$P20=" in w and w.endswith(b"+$c#63")  # M, its reply's ack, P, ...


def test_target_stopping_after_the_store_needs_no_pc_write():
    target, transport = scripted_session(stop_after_store=True)
    assert answer_all(transport) == [1, 2, 3]
    target.join(5)
    assert target.violations == []
    assert not [p for p in target.packets if p.startswith(b"P")]


def test_watchpoint_stop_elsewhere_is_an_error():
    target, transport = scripted_session()
    target.stop_after_store = True
    target.watch_pc_before = lambda: None  # type: ignore[method-assign]
    original = target.run_cpu

    def run_cpu() -> bool:
        alive = original()
        target.pc = 0x4020_1234  # somewhere that is not the doorbell store
        return alive

    target.run_cpu = run_cpu  # type: ignore[method-assign]
    with pytest.raises(armvcpu.GdbProtocolError, match="neither at nor after"):
        transport.wait_record(5)


def test_a_rejected_packet_is_an_error():
    ours, theirs = socket.socketpair()
    gdb = GdbRemote(ours, timeout=2)
    theirs.sendall(b"-")
    with pytest.raises(armvcpu.GdbProtocolError, match="rejected"):
        gdb.request("m0,4")


def test_many_posted_writes_do_not_deadlock():
    """Posted requests are bounded: thousands of writes (a guest image) with
    replies nobody reads until the end must not fill both socket buffers."""
    ours, theirs = socket.socketpair()
    done = threading.Event()

    def stub() -> None:
        buf = b""
        while not done.is_set():
            chunk = theirs.recv(65536)
            if not chunk:
                return
            buf += chunk
            while (end := buf.find(b"#")) >= 0 and len(buf) >= end + 3:
                buf = buf[end + 3 :].lstrip(b"+")
                theirs.sendall(b"+$OK#9a")

    threading.Thread(target=stub, daemon=True).start()
    gdb = GdbRemote(ours, timeout=5)
    gdb.packet_size = 0x100
    gdb.write_memory(0x4000_0000, bytes(range(256)) * 2000)  # 4,000+ packets
    done.set()
    ours.close()


def test_tcp_remote_connection_reports_closure():
    """The other end going away is a TargetConnectionError, not a hang."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    gdb = GdbRemote.connect_tcp("127.0.0.1", port, timeout=2)
    conn, _ = server.accept()
    conn.close()
    with pytest.raises(armvcpu.TargetConnectionError):
        gdb.request("?")
    gdb.close()
    server.close()


def test_rsp_decoding_of_the_gdb_manuals_examples():
    """Golden encodings from the GDB manual (Remote Protocol: Overview)."""
    assert _expand_rle(b"0* ") == b"0000"  # ' ' is 32: three more zeros
    assert _expand_rle(b'0*"00') == b"00000000"  # a run of 7 more sent as 5 and two
    assert _unescape(b"}]") == b"}"  # 0x7d is sent as 0x7d 0x5d
    assert _unescape(b"a}\x03b}\x04}\x0a") == b"a#b$*"
    # The test's own encoders agree with the manual's examples.
    assert run_length_encode(b"0000") == b"0* "
    assert run_length_encode(b"00000000") == b'0*"00'
    assert escape(b"}") == b"}]"


@pytest.mark.parametrize("no_ack", [False, True])
def test_run_length_encoded_and_escaped_replies_are_decoded(no_ack):
    """A stub that run-length encodes its hex replies and escapes its binary
    target description (as gdbserver does): the session reads the same
    registers, records and exits as from a plain one."""
    target, transport = scripted_session(encode=True, no_ack=no_ack)
    # The target description, unescaped, named the registers it holds.
    assert transport.gdb.read_register("pc") == 0x4020_0000
    assert transport.gdb.read_memory(RECORDS, RECORD_SIZE) == bytes(target.memory)
    assert answer_all(transport) == [1, 2, 3]
    target.join(5)
    assert target.violations == []
    assert int.from_bytes(target.memory[144:152], "little") == 3
    # The stub did encode: the PC as '0* 2040*%', the records' long runs of
    # '0' as the longest count ('~', 97 more), and never a count '#' or '$'.
    assert target.encoded_replies[0] == b"0* 2040*%"
    assert any(b"*~" in r for r in target.encoded_replies)
    assert not any(b"*#" in r or b"*$" in r for r in target.encoded_replies)
