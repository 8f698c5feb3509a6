// The emulated GIC's register decoding on random accesses: the distributor
// and redistributors (vgic_dist.hpp) with random live state, and the Group 1
// virtual CPU interface registers (vgic_icv.hpp) on random list registers.
// Invariants (GICv3 specification, IHI 0069H, chapter 12): an access is
// handled exactly when it falls in the GIC's frames; read-only registers
// never change; GICD_CTLR keeps ARE and DS; reads of the pending and active
// registers include every live bit given; ICV_BPR1_EL1 never holds a value
// below its minimum once written; an acknowledge changes at most one list
// register and returns an INTID that was in it, or 1023. Writes logged for
// another vCPU's list registers (vgic_lr_write.hpp) change only a list
// register's State field, never add pending, add active only to a pending
// software interrupt, and a clear-pending or clear-active last written
// leaves that state cleared.
#include "armvcpu/vgic_dist.hpp"
#include "armvcpu/vgic_icv.hpp"
#include "armvcpu/vgic_lr_write.hpp"
#include "fuzz_input.hpp"

using namespace armvcpu;
using namespace armvcpu::vgic;

namespace {

// An address near or in the GIC's frames: GICD, a redistributor's RD_base
// or SGI_base, or just past the last one.
std::uint64_t pick_address(fuzz::Input& in) {
    const std::uint64_t off = in.take<std::uint16_t>();
    switch (in.take<std::uint8_t>() % 4) {
        case 0: return kGicdBase + off;
        case 1: return kGicrBase + (in.take<std::uint8_t>() % (kMaxVcpus + 1)) * kGicrStride + off;
        case 2:
            return kGicrBase + kGicrSgiFrame + (in.take<std::uint8_t>() % 3) * kGicrStride + off;
        default: return kGicdBase - 0x100 + off;
    }
}

void fuzz_distributor(fuzz::Input& in) {
    const std::uint64_t mpidr[kMaxVcpus] = {0x80000000, 0x80000001, 0x80000100, 0x80010000,
                                            0x81000000, 0x80000005, 0x80000006, 0x80000007};
    Distributor d;
    const unsigned vcpus = 1 + in.take<std::uint8_t>() % kMaxVcpus;
    d.reset(vcpus, mpidr);
    const std::uint64_t typer = d.read(kGicdBase + gicd::TYPER, 4).value;
    const std::uint64_t gicr_typer = d.read(kGicrBase + gicr::TYPER, 8).value;
    for (unsigned step = 0; step < 64 && !in.empty(); ++step) {
        const std::uint64_t addr = pick_address(in);
        const unsigned width = in.take<std::uint8_t>() % 10;
        const bool in_frames = (addr >= kGicdBase && addr < kGicdBase + kGicdSize) ||
                               (addr >= kGicrBase && addr < kGicrBase + vcpus * kGicrStride);
        if ((in.take<std::uint8_t>() & 1) != 0) {
            const Access a = d.write(addr, width, in.take<std::uint64_t>());
            ARMVCPU_FUZZ_CHECK(a.handled == in_frames);
            ARMVCPU_FUZZ_CHECK(a.effect.bank < kNumBanks && a.effect.vcpu < vcpus);
            ARMVCPU_FUZZ_CHECK(
                a.effect.route_changed_intid == 0 ||
                (a.effect.route_changed_intid >= 32 && a.effect.route_changed_intid < kNumIntids));
        } else {
            LiveState live;
            for (unsigned b = 0; b < kNumBanks; ++b) {
                live.lr_pending[b] = in.take<std::uint32_t>();
                live.lr_active[b] = in.take<std::uint32_t>();
                live.line[b] = in.take<std::uint32_t>();
            }
            const Access a = d.read(addr, width, &live);
            ARMVCPU_FUZZ_CHECK(a.handled == in_frames);
            if (!in_frames || width != 4) continue;
            // A pending or active register's read includes every live bit.
            std::uint64_t off = addr - kGicdBase;
            unsigned bank = 0;
            if (addr >= kGicrBase) {
                off = (addr - kGicrBase) % kGicrStride;
                if (off < kGicrSgiFrame || off - kGicrSgiFrame >= 0x400 ||
                    (off - kGicrSgiFrame) % 0x80 != 0) {
                    continue;
                }
                off -= kGicrSgiFrame;
            } else {
                bank = static_cast<unsigned>((off % 0x80) / 4);
                if (bank == 0 || bank >= kNumBanks) continue;
            }
            std::uint32_t must = 0;
            if (off >= gicd::ISPENDR && off < gicd::ISACTIVER) {
                must = live.lr_pending[bank] | live.line[bank];
            } else if (off >= gicd::ISACTIVER && off < gicd::IPRIORITYR) {
                must = live.lr_active[bank];
            }
            ARMVCPU_FUZZ_CHECK((a.value & must) == must);
        }
        // Read-only and reserved state never changes.
        ARMVCPU_FUZZ_CHECK(d.read(kGicdBase + gicd::TYPER, 4).value == typer);
        ARMVCPU_FUZZ_CHECK(d.read(kGicrBase + gicr::TYPER, 8).value == gicr_typer);
        ARMVCPU_FUZZ_CHECK(d.read(kGicdBase + gicd::IIDR, 4).value == kIidr);
        ARMVCPU_FUZZ_CHECK(d.read(kGicdBase + gicd::PIDR2, 4).value == kPidr2);
        const std::uint64_t ctlr = d.read(kGicdBase + gicd::CTLR, 4).value;
        ARMVCPU_FUZZ_CHECK((ctlr & (gicd::kCtlrAre | gicd::kCtlrDs)) ==
                           (gicd::kCtlrAre | gicd::kCtlrDs));
        ARMVCPU_FUZZ_CHECK((ctlr & ~std::uint64_t{0x53}) == 0);
        ARMVCPU_FUZZ_CHECK(d.read(kGicrBase + kGicrSgiFrame + gicr::ICFGR0, 4).value ==
                           0xAAAA'AAAAu);
    }
    // Whatever it took, the model only hands over deliverable interrupts.
    for (unsigned v = 0; v < vcpus; ++v) {
        std::uint32_t intid = 0;
        for (unsigned n = 0; n < kNumIntids && d.take_pending(v, intid); ++n) {
            ARMVCPU_FUZZ_CHECK(intid < kNumIntids && d.deliverable(v, intid));
            ARMVCPU_FUZZ_CHECK(intid < 32 || d.route_of(intid) == v);
        }
    }
}

void fuzz_cpu_interface(fuzz::Input& in) {
    IcvState s;
    s.num_lrs = in.take<std::uint8_t>() % (kMaxLrs + 1);
    s.prebits = 5 + in.take<std::uint8_t>() % 3;
    for (unsigned i = 0; i < kMaxLrs; ++i) s.lr[i] = in.take<std::uint64_t>();
    for (unsigned i = 0; i < 4; ++i) {
        s.ap0r[i] = in.take<std::uint32_t>();
        s.ap1r[i] = in.take<std::uint32_t>();
    }
    s.vmcr = in.take<std::uint64_t>();
    s.hcr = in.take<std::uint64_t>();
    constexpr SysRegEncoding kRegs[] = {kIccIar1El1,      kIccEoir1El1,   kIccHppir1El1,
                                        kIccBpr1El1,      kIccIgrpen1El1, kIccAp1r0El1,
                                        {3, 0, 12, 9, 3}, {3, 0, 4, 6, 0}};
    for (unsigned step = 0; step < 32 && !in.empty(); ++step) {
        const SysRegEncoding reg = kRegs[in.take<std::uint8_t>() % 8];
        const bool is_read = (in.take<std::uint8_t>() & 1) != 0;
        const std::uint64_t value = in.take<std::uint64_t>();
        const IcvState before = s;
        const IcvAccess a = icv_group1_access(s, reg.iss_key(), is_read, value);
        unsigned lrs_changed = 0;
        for (unsigned i = 0; i < kMaxLrs; ++i) lrs_changed += s.lr[i] != before.lr[i] ? 1 : 0;
        if (!a.handled || a.undefined) {
            ARMVCPU_FUZZ_CHECK(lrs_changed == 0 && s.vmcr == before.vmcr && s.hcr == before.hcr);
            continue;
        }
        ARMVCPU_FUZZ_CHECK(lrs_changed <= 1);
        if (reg == kIccIar1El1) {
            bool found = a.value == kSpurious;
            for (unsigned i = 0; i < s.num_lrs && i < kMaxLrs; ++i) {
                found = found || lr_vintid(before.lr[i]) == a.value;
            }
            ARMVCPU_FUZZ_CHECK(found);
        }
        if (reg == kIccBpr1El1 && !is_read && (s.vmcr & vmcr::kVcbpr) == 0) {
            ARMVCPU_FUZZ_CHECK(s.vbpr1() >= s.min_bpr0() + 1);
        }
        // Only VENG1 and VBPR1 of ICH_VMCR_EL2 are ever written.
        constexpr std::uint64_t kWritable = vmcr::kVeng1 | (7ull << vmcr::kVbpr1Shift);
        ARMVCPU_FUZZ_CHECK((s.vmcr & ~kWritable) == (before.vmcr & ~kWritable));
        // ICH_HCR_EL2: only EOIcount moves, and by one.
        constexpr std::uint64_t kCount = 0x1full << kIchHcrEoiCountShift;
        ARMVCPU_FUZZ_CHECK((s.hcr & ~kCount) == (before.hcr & ~kCount));
        const std::uint64_t moved =
            ((s.hcr >> kIchHcrEoiCountShift) - (before.hcr >> kIchHcrEoiCountShift)) & 0x1f;
        ARMVCPU_FUZZ_CHECK(moved <= 1);
        ARMVCPU_FUZZ_CHECK(a.deactivate_pintid == kNoInterrupt ||
                           is_valid_intid(a.deactivate_pintid));
    }
}

void fuzz_lr_writes(fuzz::Input& in) {
    const std::uint64_t mpidr[kMaxVcpus] = {0x80000000, 0x80000001};
    Distributor d;
    d.reset(2, mpidr);
    LrWriteLog log;
    WriteEffect last{};
    for (unsigned step = 0; step < 16 && !in.empty(); ++step) {
        // The effects the distributor reports for its set/clear registers.
        const std::uint64_t off = gicd::ISPENDR + (in.take<std::uint16_t>() % 0x200);
        const std::uint64_t base =
            (in.take<std::uint8_t>() & 1) != 0 ? kGicdBase : kGicrBase + kGicrSgiFrame;
        const WriteEffect e = d.write(base + (off & ~3ull), 4, in.take<std::uint32_t>()).effect;
        log.record(e);
        last = e;
    }
    for (unsigned i = 0; i < 8 && !in.empty(); ++i) {
        const std::uint64_t lr = in.take<std::uint64_t>();
        const LrWriteResult r = log.apply(lr);
        constexpr std::uint64_t kState = kLrPendingBit | kLrActiveBit;
        ARMVCPU_FUZZ_CHECK((r.lr & ~kState) == (lr & ~kState));
        const bool hw = (lr & kLrHwBit) != 0;
        ARMVCPU_FUZZ_CHECK(!r.deactivate_physical || hw);
        if (lr_state(lr) == LrState::Invalid) ARMVCPU_FUZZ_CHECK(r.lr == lr);
        ARMVCPU_FUZZ_CHECK((r.lr & kLrPendingBit) == 0 || (lr & kLrPendingBit) != 0);
        if ((r.lr & kLrActiveBit) != 0 && (lr & kLrActiveBit) == 0) {
            ARMVCPU_FUZZ_CHECK(r.took_active && !hw && lr_state(lr) == LrState::Pending);
        }
        const std::uint32_t intid = lr_vintid(lr);
        if (intid < kNumIntids && intid / 32 == last.bank) {
            const std::uint32_t bit = 1u << (intid % 32);
            if ((last.pending_cleared & bit) != 0) ARMVCPU_FUZZ_CHECK((r.lr & kLrPendingBit) == 0);
            if ((last.active_cleared & bit) != 0) ARMVCPU_FUZZ_CHECK((r.lr & kLrActiveBit) == 0);
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    fuzz::Input in(data, size);
    const std::uint8_t which = in.take<std::uint8_t>();
    if ((which & 1) != 0) {
        fuzz_distributor(in);
    } else if ((which & 2) != 0) {
        fuzz_lr_writes(in);
    } else {
        fuzz_cpu_interface(in);
    }
    return 0;
}
