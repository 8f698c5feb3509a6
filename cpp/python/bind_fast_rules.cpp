// Fast rules: their layout (for the host that writes them into firmware
// memory) and a host-side table that applies them exactly as the firmware.
#include <memory>

#include "armvcpu/fast_rules.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

void bind_fast_rules(py::module_& m) {
    py::enum_<RuleKind>(m, "RuleKind", "What a fast rule matches.")
        .value("Empty", RuleKind::Empty)
        .value("Mmio", RuleKind::Mmio)
        .value("Hypercall", RuleKind::Hypercall)
        .value("SysReg", RuleKind::SysReg);
    m.attr("RULE_COUNT_ONLY") = kRuleCountOnly;
    m.attr("RULE_READS") = kRuleReads;
    m.attr("RULE_WRITES") = kRuleWrites;
    m.attr("RULE_INJECT_ABORT") = kRuleInjectAbort;
    m.attr("RULE_INJECT_UNDEF") = kRuleInjectUndef;
    m.attr("FAST_RULE_MAGIC") = kFastRuleMagic;
    m.attr("MAX_FAST_RULES") = kMaxFastRules;
    m.attr("FAST_RULES_OFFSET") = offsetof(FastRuleTable, rules);

    py::class_<FastRule>(m, "FastRule", R"doc(
One fast rule as it sits in firmware memory (see fast_rules.hpp).

>>> from armvcpu._core import FastRule, RuleKind
>>> r = FastRule(RuleKind.Hypercall, lo=0x10, value=7)
>>> len(r.to_bytes()) == FastRule.SIZE
True
)doc")
        .def(py::init([](RuleKind kind, std::uint32_t flags, std::uint64_t lo, std::uint64_t hi,
                         std::uint64_t value) { return FastRule{kind, flags, lo, hi, value, 0}; }),
             py::arg("kind"), py::arg("flags") = 0, py::arg("lo") = 0, py::arg("hi") = 0,
             py::arg("value") = 0)
        .def_readwrite("kind", &FastRule::kind)
        .def_readwrite("flags", &FastRule::flags)
        .def_readwrite("lo", &FastRule::lo)
        .def_readwrite("hi", &FastRule::hi)
        .def_readwrite("value", &FastRule::value)
        .def_readonly("hits", &FastRule::hits)
        .def("to_bytes", &to_bytes<FastRule>)
        .def_static(
            "from_bytes", [](const py::buffer& b) { return from_buffer<FastRule>(b, "FastRule"); },
            py::arg("data"))
        .def_property_readonly_static("SIZE", [](py::object) { return sizeof(FastRule); })
        .def_property_readonly_static("OFFSETS",
                                      [](py::object) {
                                          py::dict d;
                                          d["kind"] = offsetof(FastRule, kind);
                                          d["hits"] = offsetof(FastRule, hits);
                                          return d;
                                      })
        .def("__repr__", [](const FastRule& r) {
            return "FastRule(kind=" + std::to_string(static_cast<unsigned>(r.kind)) +
                   ", flags=" + hex(r.flags) + ", lo=" + hex(r.lo) + ", hi=" + hex(r.hi) +
                   ", value=" + hex(r.value) + ", hits=" + std::to_string(r.hits) + ")";
        });

    py::class_<FastRuleTable, std::unique_ptr<FastRuleTable>>(m, "FastRuleTable", R"doc(
A fast-rule table on the host: applies rules with the firmware's own code
(for dry runs and replay).

>>> from armvcpu._core import FastRuleTable, FastRule, RuleKind, TrapFrame, Syndrome, classify_sync
>>> t = FastRuleTable(); t.set(0, FastRule(RuleKind.Hypercall, lo=5, value=99))
>>> f = TrapFrame(); f.set_gpr(0, 5)
>>> reason, f = classify_sync(f, Syndrome(esr=0x5a000000))
>>> handled, f = t.apply(reason, f); handled, f.gpr(0), t.get(0).hits
(True, 99, 1)
)doc")
        .def(py::init([]() {
            auto t = std::make_unique<FastRuleTable>();
            *t = FastRuleTable{kFastRuleMagic, kMaxFastRules, 0, {}};
            return t;
        }))
        .def(
            "set",
            [](FastRuleTable& t, unsigned i, const FastRule& r) {
                if (i >= kMaxFastRules) throw py::index_error("rule slot out of range");
                t.rules[i] = r;
            },
            py::arg("index"), py::arg("rule"))
        .def(
            "get",
            [](const FastRuleTable& t, unsigned i) {
                if (i >= kMaxFastRules) throw py::index_error("rule slot out of range");
                return t.rules[i];
            },
            py::arg("index"))
        .def(
            "apply",
            [](FastRuleTable& t, const ExitReason& reason, const TrapFrame& frame) {
                TrapFrame updated = frame;
                const bool handled = apply_fast_rules(t, reason, updated);
                return py::make_tuple(handled, updated);
            },
            py::arg("reason"), py::arg("frame"),
            "(handled, frame): whether the rules answer this exit, and the frame they leave.")
        .def("to_bytes", &to_bytes<FastRuleTable>)
        .def_property_readonly_static("SIZE", [](py::object) { return sizeof(FastRuleTable); });
}

}  // namespace armvcpu::py_bind
