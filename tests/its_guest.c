/* An ITS driver in miniature (tests/test_its.py): LPI tables for the
 * redistributor, the ITS's device and collection tables and command queue,
 * the edu PCIe device's MSI aimed at GITS_TRANSLATER, then MAPD, MAPC,
 * MAPTI, INV and SYNC, and NRAISE interrupts raised at the device, each
 * taken as an LPI by polling ICC_IAR1_EL1 (IRQs stay masked). It prints
 * what it read and received; bare QEMU and armvcpu must print the same.
 * Register offsets and command layouts: GICv3 specification (IHI 0069H),
 * 12.19 (GITS_*), 5.3 (ITS commands), 12.11 (GICR_PROPBASER/PENDBASER). */
#include <armvcpu_guest.h>

/* QEMU virt: GICD, GICR (vCPU 0's RD_base), ITS, the low PCIe ECAM. */
#define GICD 0x08000000ul
#define GICR 0x080A0000ul
#define GITS 0x08080000ul
#define ECAM 0x4010000000ul
#define BAR0 0x10000000ul
/* Tables in guest RAM (IPA == PA under armvcpu, as on the bare machine). */
#define PROP 0x44000000ul  /* LPI configuration: 64 KiB aligned */
#define PEND 0x44010000ul  /* LPI pending: 64 KiB aligned */
#define CMDQ 0x44020000ul  /* ITS command queue: 4 KiB */
#define ITT  0x44030000ul  /* the device's interrupt translation table */
#define TBL  0x44100000ul  /* GITS_BASER<n> tables, 64 KiB each */
#define LPI 8195u
#define NRAISE 5
#define NBURST 6 /* LPIs raised at once by INT commands */
#define USE_ITS 1 /* 0: print the GIC's identification registers only */
#define BENCH 0   /* 1: also time MSIs, ITS commands and GIC accesses (bench/its.py) */
#define PROBE 0   /* 1: first aim the LPI tables at 0x2_0000_0000 (armvcpu's firmware) */

static inline uint64_t rd64(uintptr_t a) { return *(volatile uint64_t *)a; }
static inline void wr64(uintptr_t a, uint64_t v) { *(volatile uint64_t *)a = v; }
static inline uint16_t rd16(uintptr_t a) { return *(volatile uint16_t *)a; }
static inline void wr16(uintptr_t a, uint16_t v) { *(volatile uint16_t *)a = v; }
static inline uint8_t rd8(uintptr_t a) { return *(volatile uint8_t *)a; }
static inline void wr8(uintptr_t a, uint8_t v) { *(volatile uint8_t *)a = v; }

static void zero(uintptr_t a, unsigned long n) {
    for (unsigned long i = 0; i < n; i += 8) wr64(a + i, 0);
}

static void hex(uint64_t v, int digits) {
    char buf[17];
    for (int i = digits - 1; i >= 0; --i) {
        unsigned d = v & 0xf;
        buf[i] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v >>= 4;
    }
    buf[digits] = 0;
    armvcpu_puts(buf);
}

static void say(const char *name, uint64_t v, int digits) {
    armvcpu_puts(name);
    armvcpu_puts("=");
    hex(v, digits);
    armvcpu_puts("\n");
}

static unsigned cwriter;

/* Queues one 32-byte command and waits for the ITS to consume it. */
static void its_cmd(uint64_t d0, uint64_t d1, uint64_t d2, uint64_t d3) {
    uintptr_t slot = CMDQ + cwriter;
    wr64(slot, d0);
    wr64(slot + 8, d1);
    wr64(slot + 16, d2);
    wr64(slot + 24, d3);
    cwriter = (cwriter + 32) % 4096;
    __asm__ volatile("dsb sy" ::: "memory");
    wr64(GITS + 0x88, cwriter);                    /* GITS_CWRITER */
    while ((rd64(GITS + 0x90) & 0xfffe0) != cwriter) { /* GITS_CREADR */
    }
}

static uint64_t read_iar(void) {
    uint64_t v;
    __asm__ volatile("mrs %0, icc_iar1_el1" : "=r"(v));
    return v & 0xffffff;
}

/* More LPIs pending at once than a hypervisor has list registers (QEMU's
 * virtual interface has 4): events 1..NBURST of the device mapped to the
 * LPIs after LPI and raised together by INT commands, IRQs masked; then
 * each taken and ended. Prints which arrived (a bit per LPI). */
static void burst(uint32_t device_id, uint64_t rdbase) {
    for (unsigned e = 1; e <= NBURST; ++e) {
        its_cmd(((uint64_t)device_id << 32) | 0x0a, ((uint64_t)(LPI + e) << 32) | e, 0, 0);
    }
    for (unsigned e = 1; e <= NBURST; ++e) its_cmd(((uint64_t)device_id << 32) | 0x0c, e, 0, 0);
    for (unsigned e = 1; e <= NBURST; ++e) its_cmd(((uint64_t)device_id << 32) | 0x03, e, 0, 0);
    its_cmd(0x05, 0, rdbase, 0); /* SYNC */
    uint32_t mask = 0;
    unsigned spins = 0;
    while (mask != (1u << NBURST) - 1 && ++spins < 200000) {
        uint64_t id = read_iar();
        if (id == 1023) continue;
        if (id > LPI && id <= LPI + NBURST) mask |= 1u << (id - LPI - 1);
        __asm__ volatile("msr icc_eoir1_el1, %0; isb" ::"r"(id));
    }
    say("burst", mask, 4);
}

static uint64_t now(void) {
    uint64_t v;
    __asm__ volatile("isb; mrs %0, cntvct_el0" : "=r"(v));
    return v;
}

static void dec(const char *name, uint64_t v) {
    char buf[24];
    int i = 23;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    armvcpu_puts(name);
    armvcpu_puts("=");
    armvcpu_puts(buf + i);
    armvcpu_puts("\n");
}

/* Nanoseconds per operation from counter ticks over n operations. */
static void per_op(const char *name, uint64_t ticks, uint64_t n) {
    uint64_t freq;
    __asm__ volatile("mrs %0, cntfrq_el0" : "=r"(freq));
    dec(name, ticks * 1000000000ull / freq / n);
}

/* The figures bench/its.py compares: an MSI from the device's register
 * write to the guest's EOI; one ITS command (INV, then SYNC) through the
 * queue; and one read of an ITS register (the ITS frame: passed through
 * under armvcpu) against one of a distributor register (emulated in EL2
 * under armvcpu: a trap per access, what an emulated ITS would cost per
 * register access). */
static void bench(uint32_t device_id, uint64_t rdbase) {
    enum { kMsis = 2000, kCommands = 500, kReads = 5000 };
    uint64_t t = now();
    for (unsigned i = 0; i < kMsis; ++i) {
        armvcpu_write32(BAR0 + 0x60, 1);
        uint64_t id;
        while ((id = read_iar()) == 1023) {
        }
        armvcpu_write32(BAR0 + 0x64, 1);
        __asm__ volatile("msr icc_eoir1_el1, %0; isb" ::"r"(id));
    }
    per_op("bench_msi_ns", now() - t, kMsis);
    t = now();
    for (unsigned i = 0; i < kCommands / 2; ++i) {
        its_cmd(((uint64_t)device_id << 32) | 0x0c, 0, 0, 0);
        its_cmd(0x05, 0, rdbase, 0);
    }
    per_op("bench_its_command_ns", now() - t, kCommands);
    uint32_t sink = 0;
    t = now();
    for (unsigned i = 0; i < kReads; ++i) sink += armvcpu_read32(GITS + 0x90);
    per_op("bench_its_register_read_ns", now() - t, kReads);
    t = now();
    for (unsigned i = 0; i < kReads; ++i) sink += armvcpu_read32(GICD + 0x4);
    per_op("bench_gicd_register_read_ns", now() - t, kReads);
    if (sink == 1) armvcpu_puts("\n");
}

int main(void) {
    /* The CPU interface and the distributor, as a Linux would bring them up. */
    armvcpu_write32(GICD, 0x12); /* ARE | EnableGrp1 */
    while (armvcpu_read32(GICD) & (1u << 31)) {
    }
    armvcpu_write32(GICR + 0x14, armvcpu_read32(GICR + 0x14) & ~2u);
    while (armvcpu_read32(GICR + 0x14) & 4u) {
    }
    __asm__ volatile("msr icc_sre_el1, %0; isb" ::"r"(1ul));
    __asm__ volatile("msr icc_pmr_el1, %0" ::"r"(0xfful));
    __asm__ volatile("msr icc_igrpen1_el1, %0; isb" ::"r"(1ul));

    uint32_t gicd_typer = armvcpu_read32(GICD + 4);
    uint64_t gicr_typer = rd64(GICR + 8);
    say("GICD_TYPER.LPIS", (gicd_typer >> 17) & 1, 1);
    say("GICD_TYPER.IDbits", (gicd_typer >> 19) & 0x1f, 2);
    say("GICR_TYPER.PLPIS", gicr_typer & 1, 1);
    say("GICR_TYPER.Processor_Number", (gicr_typer >> 8) & 0xffff, 4);
    if (!USE_ITS || !((gicd_typer >> 17) & 1)) { /* the ITS frame may not be there */
        armvcpu_puts("ITS not used\n");
        armvcpu_system_off();
    }
    uint64_t gits_typer = rd64(GITS + 8);
    say("GITS_TYPER", gits_typer, 16);
    unsigned pta = (gits_typer >> 19) & 1;

    /* Redistributor: LPI tables (14 ID bits: LPIs 8192..16383), LPIs on. */
    zero(PROP, 8192);
    zero(PEND, 0x10000);
    for (unsigned n = 0; n <= NBURST; ++n) wr8(PROP + (LPI - 8192) + n, 0xa0 | 1); /* enabled */
    if (PROBE) {
        wr64(GICR + 0x70, 0x200000000ul | (14 - 1));
        wr64(GICR + 0x78, 0x200000000ul);
        armvcpu_write32(GICR + 0x7c, 0x2); /* the high half alone, too */
        say("probe GICR_PROPBASER", rd64(GICR + 0x70), 16);
        say("probe GICR_PENDBASER", rd64(GICR + 0x78), 16);
    }
    wr64(GICR + 0x70, PROP | (14 - 1));  /* GICR_PROPBASER: IDbits = 13 */
    wr64(GICR + 0x78, PEND);             /* GICR_PENDBASER */
    say("GICR_PROPBASER", rd64(GICR + 0x70), 16);
    say("GICR_PENDBASER", rd64(GICR + 0x78), 16);
    armvcpu_write32(GICR, armvcpu_read32(GICR) | 1); /* EnableLPIs */
    say("GICR_CTLR.EnableLPIs", armvcpu_read32(GICR) & 1, 1);

    /* ITS: device and collection tables (flat, 64 KiB each), the queue. */
    for (unsigned n = 0; n < 8; ++n) {
        uintptr_t reg = GITS + 0x100 + 8 * n;
        uint64_t baser = rd64(reg);
        unsigned type = (baser >> 56) & 7;
        if (type == 0) continue;
        uintptr_t table = TBL + n * 0x10000;
        zero(table, 0x10000);
        /* Valid, Type and Entry_Size as read, 4 KiB pages, 16 of them. */
        uint64_t value = (1ull << 63) | (baser & (0x7full << 56)) | (baser & (0x1full << 48)) |
                         table | (16 - 1);
        wr64(reg, value);
        armvcpu_puts("GITS_BASER type ");
        hex(type, 1);
        armvcpu_puts(" valid ");
        hex(rd64(reg) >> 63, 1);
        armvcpu_puts("\n");
    }
    zero(CMDQ, 4096);
    wr64(GITS + 0x80, (1ull << 63) | CMDQ | 0); /* GITS_CBASER: one 4 KiB page */
    wr64(GITS + 0x88, 0);
    armvcpu_write32(GITS, 1); /* GITS_CTLR.Enabled */
    say("GITS_CTLR", armvcpu_read32(GITS), 8);

    /* The edu device (1234:11e8) on bus 0: BAR0, memory and bus mastering,
     * MSI to GITS_TRANSLATER with EventID 0. */
    uintptr_t cfg = 0;
    for (unsigned dev = 0; dev < 32 && !cfg; ++dev) {
        if (armvcpu_read32(ECAM + (dev << 15)) == 0x11e81234u) cfg = ECAM + (dev << 15);
    }
    if (!cfg) {
        armvcpu_puts("no edu device\n");
        armvcpu_system_off();
    }
    uint32_t device_id = (uint32_t)((cfg - ECAM) >> 12); /* bus << 8 | devfn */
    say("DeviceID", device_id, 4);
    armvcpu_write32(cfg + 0x10, BAR0);
    say("BAR0", armvcpu_read32(cfg + 0x10), 8);
    wr16(cfg + 0x04, rd16(cfg + 0x04) | 0x6); /* Memory Space, Bus Master */
    uintptr_t msi = 0;
    for (uint8_t p = rd8(cfg + 0x34) & 0xfc; p; p = rd8(cfg + p + 1) & 0xfc) {
        if (rd8(cfg + p) == 0x05) msi = cfg + p;
    }
    if (!msi) {
        armvcpu_puts("no MSI capability\n");
        armvcpu_system_off();
    }
    uint16_t control = rd16(msi + 2);
    int is64 = (control >> 7) & 1;
    armvcpu_write32(msi + 4, 0x08090040u); /* GITS_TRANSLATER */
    if (is64) armvcpu_write32(msi + 8, 0);
    wr16(msi + (is64 ? 0xc : 0x8), 0); /* EventID 0 */
    wr16(msi + 2, control | 1);         /* MSI Enable, one vector */

    /* Map the device's event 0 to LPI through collection 0 on this CPU. */
    uint64_t rdbase = pta ? GICR : ((gicr_typer >> 8) & 0xffff) << 16;
    its_cmd(((uint64_t)device_id << 32) | 0x08, 3 /* 4 event ID bits */,
            (1ull << 63) | ITT, 0);                                   /* MAPD */
    its_cmd(0x09, 0, (1ull << 63) | rdbase | 0, 0);                   /* MAPC */
    its_cmd(((uint64_t)device_id << 32) | 0x0a, ((uint64_t)LPI << 32) | 0, 0, 0); /* MAPTI */
    its_cmd(((uint64_t)device_id << 32) | 0x0c, 0, 0, 0);             /* INV */
    its_cmd(0x05, 0, rdbase, 0);                                      /* SYNC */
    say("commands done, GITS_CREADR", rd64(GITS + 0x90), 8);

    /* Raise the device's interrupt NRAISE times; take each LPI (IRQs stay
     * masked: ICC_IAR1_EL1 polled) and acknowledge it at the device. */
    unsigned got = 0, others = 0;
    for (unsigned i = 0; i < NRAISE; ++i) {
        armvcpu_write32(BAR0 + 0x60, 1); /* INTR_RAISE */
        uint64_t id;
        unsigned spins = 0;
        while ((id = read_iar()) == 1023) {
            if (++spins == 200000) break;
        }
        if (id == 1023) break;
        if (id == LPI) {
            ++got;
        } else {
            ++others;
        }
        armvcpu_write32(BAR0 + 0x64, 1); /* INTR_ACK */
        __asm__ volatile("msr icc_eoir1_el1, %0; isb" ::"r"(id));
        armvcpu_puts("LPI ");
        hex(id, 4);
        armvcpu_puts("\n");
    }
    say("received", got, 2);
    say("other", others, 2);
    burst(device_id, rdbase);
    if (BENCH) bench(device_id, rdbase);
    armvcpu_system_off();
    return 0;
}
