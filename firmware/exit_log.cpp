#include "exit_log.hpp"

#include "armvcpu/sysreg.hpp"
#include "uart.hpp"

namespace fw {

std::uint64_t g_exits = 0;

void init_exit_logs() {
    for (unsigned i = 0; i < kMaxCpus; ++i) {
        armvcpu_exit_log[i].frequency = ARMVCPU_READ_SYSREG(cntfrq_el0);
    }
}

void log_exit(std::uint64_t seq, const armvcpu::ExitReason& reason, std::uint64_t pc) {
    using armvcpu::ExitKind;
    using uart::put_hex;
    using uart::put_str;
    put_str("armvcpu: exit ");
    uart::put_dec(seq);
    put_str(": ");
    put_str(armvcpu::exit_kind_name(reason.kind));
    if (reason.kind == ExitKind::Hypercall) {
        put_str(" nr=");
        put_hex(reason.hypercall.nr);
        put_str(" x1=");
        put_hex(reason.hypercall.args[0]);
    } else if (reason.kind == ExitKind::SysRegRead || reason.kind == ExitKind::SysRegWrite) {
        const std::uint64_t key = reason.kind == ExitKind::SysRegRead ? reason.sysreg_read.addr
                                                                      : reason.sysreg_write.addr;
        const char* name = armvcpu::sysreg_name(static_cast<std::uint32_t>(key));
        put_str(" ");
        if (name != nullptr) {
            put_str(name);
        } else {
            put_hex(key);
        }
    } else if (reason.kind == ExitKind::GuestException) {
        put_str(" EC=");
        put_hex(reason.guest_exception.ec);
        put_str(" ISS=");
        put_hex(reason.guest_exception.iss);
    }
    put_str(" pc=");
    put_hex(pc);
    put_str("\n");
}

}  // namespace fw
