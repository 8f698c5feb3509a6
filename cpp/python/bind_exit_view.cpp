// ExitView: the C++ half of armvcpu.exits.Exit (a Python subclass adds the
// rest). One allocation per exit: the record is copied into the object once,
// fields are read from that copy and the reason is decoded on first use; an
// answer that the session need not see (anything but a stop) is written
// straight into the shared record (armvcpu/host_exit.hpp) with no Python in
// between. The rules live in host_exit.hpp; this file only binds them.
#include <pybind11/stl.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "armvcpu/host_exit.hpp"
#include "bindings.hpp"

namespace armvcpu::py_bind {

namespace {

std::int64_t now_ns() {
    // CLOCK_MONOTONIC, as Python's time.perf_counter_ns() on Linux.
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

struct ExitView {
    HostExit e{};
    py::object ram = py::none();  // the shared mapping the record lives in (shm), or None
    std::size_t offset{};         // the record's offset in ram
    py::object resolver =
        py::none();                   // resolver(exit, frame_changed): answers the session must see
    py::object session = py::none();  // the Hypervisor the exit came from, or None
    py::object reason;                // the decoded variant, made on first use
    py::object frame = py::none();    // the editable TrapFrame .frame hands out, made on first use
    std::uint32_t slot{};
    bool resolved{};
    std::int64_t delivered_ns{};
    std::int64_t answered_ns{};
};

// The record at `offset` in a buffer (the shared mapping), through the
// buffer protocol directly: pybind11's buffer_info would allocate its shape
// and strides on every exit.
class RecordInBuffer {
public:
    RecordInBuffer(const py::handle& buffer, std::size_t offset, bool writable) {
        if (PyObject_GetBuffer(buffer.ptr(), &view_, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) !=
            0) {
            throw py::error_already_set();
        }
        if (offset + sizeof(ExitRecord) > static_cast<std::size_t>(view_.len)) {
            PyBuffer_Release(&view_);
            throw py::value_error("exit record at offset " + std::to_string(offset) +
                                  " lies outside the buffer");
        }
        record_ = reinterpret_cast<ExitRecord*>(static_cast<char*>(view_.buf) + offset);
    }
    RecordInBuffer(const RecordInBuffer&) = delete;
    RecordInBuffer& operator=(const RecordInBuffer&) = delete;
    ~RecordInBuffer() { PyBuffer_Release(&view_); }
    ExitRecord& operator*() const { return *record_; }

private:
    Py_buffer view_{};
    ExitRecord* record_{};
};

// ExitKind members as Python objects, made once: a pybind11 enum cast makes
// a new object every time.
const py::object& kind_object(ExitKind kind) {
    // Never destroyed: the interpreter may be gone by then.
    static auto* const members = new py::object[kNumExitKinds];
    auto& member = members[static_cast<std::uint32_t>(kind)];
    if (!member) member = py::cast(kind);
    return member;
}

void check_record(const ExitRecord& r) {
    if (r.magic != kExitRecordMagic) {
        throw py::value_error("not an exit record: magic " + hex(r.magic) + ", expected " +
                              hex(kExitRecordMagic));
    }
    if (r.version != kExitRecordVersion || r.size != sizeof(ExitRecord)) {
        throw py::value_error("exit record version " + std::to_string(r.version) + " size " +
                              std::to_string(r.size) + " does not match this armvcpu");
    }
    if (static_cast<std::uint32_t>(r.reason.kind) >= kNumExitKinds) {
        throw py::value_error("exit record holds an unknown exit kind " +
                              std::to_string(static_cast<std::uint32_t>(r.reason.kind)));
    }
}

// The C++ value of an ExitView instance without pybind11's type caster (a
// lookup of the Python type's bases on every call). Callers make sure
// `self` is an ExitView: a method descriptor checks its self's type. A
// Python subclass with ExitView as its only pybind11 base (armvcpu.exits.Exit)
// has the simple layout, the value in its one slot.
ExitView& view_of(PyObject* self) {
    auto* inst = reinterpret_cast<py::detail::instance*>(self);
    if (inst->simple_layout) {
        if (!inst->simple_holder_constructed) {
            throw py::type_error("this ExitView was made without its exit (no __init__)");
        }
        return *static_cast<ExitView*>(inst->simple_value_holder[0]);
    }
    return py::handle(self).cast<ExitView&>();
}

const py::detail::type_info* exit_view_type_info() {
    static const py::detail::type_info* const info = py::detail::get_type_info(typeid(ExitView));
    return info;
}

// The editable frame the user may have changed goes into the answer.
void sync_frame(ExitView& v) {
    if (!v.frame.is_none()) v.e.answer.frame = v.frame.cast<const TrapFrame&>();
}

std::uint64_t register_value(const char* name, const py::handle& value) {
    if (!PyLong_Check(value.ptr())) {
        throw py::type_error(std::string("register ") + name + " takes an int, not " +
                             std::string(py::str(py::type::handle_of(value))));
    }
    const unsigned long long v = PyLong_AsUnsignedLongLong(value.ptr());
    if (PyErr_Occurred() != nullptr) {
        PyErr_Clear();
        throw py::type_error(std::string("register ") + name +
                             " takes an unsigned 64-bit value, not " +
                             std::string(py::repr(value)));
    }
    return v;
}

// Register edits, all or nothing: a bad name or value changes none. `names`
// and `values` are a vectorcall's keyword names and values (names may be null).
void apply_registers(ExitView& v, const py::handle& x0, PyObject* names, PyObject* const* values) {
    TrapFrame edited = v.e.answer.frame;
    if (x0 && !x0.is_none()) edited.set_gpr(0, register_value("x0", x0));
    const Py_ssize_t count = names == nullptr ? 0 : PyTuple_GET_SIZE(names);
    for (Py_ssize_t i = 0; i < count; ++i) {
        Py_ssize_t len = 0;
        const char* name = PyUnicode_AsUTF8AndSize(PyTuple_GET_ITEM(names, i), &len);
        if (name == nullptr) throw py::error_already_set();
        const HostRegisterName reg = parse_host_register(name, static_cast<std::size_t>(len));
        if (reg.kind == HostRegister::Unknown) {
            throw py::key_error("no register '" + std::string(name, static_cast<std::size_t>(len)) +
                                "'; use x0..x30, pc, sp_el0, elr or spsr");
        }
        set_host_register(edited, reg, register_value(name, values[i]));
    }
    v.e.answer.frame = edited;
    v.frame = py::none();  // .frame shows the edits from now on
}

// A kwargs dict as vectorcall keyword names and values.
struct KeywordArgs {
    py::tuple names;
    std::vector<PyObject*> values;
    explicit KeywordArgs(const py::dict& kwargs) : names(kwargs.size()) {
        Py_ssize_t i = 0;
        for (auto item : kwargs) {
            names[static_cast<std::size_t>(i++)] = item.first;
            values.push_back(item.second.ptr());
        }
    }
};

[[noreturn]] void already_answered(const ExitView& v) {
    PyErr_SetString(
        PyExc_RuntimeError,
        ("exit #" + std::to_string(v.e.delivered.seq) + " was already answered").c_str());
    throw py::error_already_set();
}

// Hands the answer on: into the shared record directly, or to the session's
// resolver when it must see it (a stop) or there is no shared record (gdb).
void answer(const py::object& self, ExitView& v) {
    v.resolved = true;
    v.answered_ns = now_ns();
    if (!v.ram.is_none() && !v.e.may_stop_vm()) {
        v.e.publish(*RecordInBuffer(v.ram, v.offset, true));
        return;
    }
    v.resolver(self, v.e.frame_changed());
}

void answer_with(const py::object& self, HostAction action) {
    auto& v = view_of(self.ptr());
    if (v.resolved) already_answered(v);
    sync_frame(v);
    v.e.answer.action = action;
    answer(self, v);
}

void resume(const py::object& self, const py::handle& x0, PyObject* names,
            PyObject* const* values) {
    auto& v = view_of(self.ptr());
    if (v.resolved) already_answered(v);
    sync_frame(v);
    if ((x0 && !x0.is_none()) || names != nullptr) apply_registers(v, x0, names, values);
    if (v.e.resume_means_default()) {
        v.frame = py::none();
        v.e.answer.frame = v.e.delivered.frame;  // the edits die with the VM
        v.e.answer.action = HostAction::Default;
    } else {
        v.e.answer.action = HostAction::Resume;
    }
    answer(self, v);
}

// exit.resume(x0=None, **regs) as a vectorcall method: the main loop's one
// call per exit, without pybind11's per-call argument vectors.
PyObject* resume_vectorcall(PyObject* self, PyObject* const* args, Py_ssize_t nargsf,
                            PyObject* kwnames) {
    try {
        const Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
        if (nargs > 1) throw py::type_error("resume() takes x0 and register keywords only");
        py::handle x0 = nargs == 1 ? py::handle(args[0]) : py::handle();
        PyObject* names = nullptr;
        PyObject* const* values = args + nargs;
        py::tuple rest;  // the keyword names but x0
        std::vector<PyObject*> rest_values;
        if (kwnames != nullptr && PyTuple_GET_SIZE(kwnames) > 0) {
            const Py_ssize_t count = PyTuple_GET_SIZE(kwnames);
            Py_ssize_t x0_at = -1;
            for (Py_ssize_t i = 0; i < count; ++i) {
                if (PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(kwnames, i), "x0") == 0) {
                    x0_at = i;
                }
            }
            if (x0_at >= 0) {
                if (x0) throw py::type_error("resume() got x0 twice");
                x0 = values[x0_at];
            }
            if (x0_at < 0) {
                names = kwnames;
            } else if (count > 1) {
                rest = py::tuple(count - 1);
                for (Py_ssize_t i = 0, j = 0; i < count; ++i) {
                    if (i == x0_at) continue;
                    rest[static_cast<std::size_t>(j++)] =
                        py::reinterpret_borrow<py::object>(PyTuple_GET_ITEM(kwnames, i));
                    rest_values.push_back(values[i]);
                }
                names = rest.ptr();
                values = rest_values.data();
            }
        }
        resume(py::reinterpret_borrow<py::object>(self), x0, names, values);
        Py_RETURN_NONE;
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (const py::cast_error& e) {
        PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const py::builtin_exception& e) {
        e.set_error();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
    return nullptr;
}

// A C entry point's body: a C++ exception becomes the Python error it
// stands for, and the call returns NULL.
template <class F>
PyObject* guarded(F&& body) {
    try {
        return body();
    } catch (py::error_already_set& e) {
        e.restore();
    } catch (const py::builtin_exception& e) {
        e.set_error();
    } catch (const std::exception& e) {
        PyErr_SetString(PyExc_RuntimeError, e.what());
    }
    return nullptr;
}

// The fields a loop or a policy reads on every exit, as C getters (see
// add_c_property).
template <class F>
PyObject* get_field(PyObject* self, F&& field) {
    return guarded([&]() -> PyObject* {
        const auto* type = reinterpret_cast<PyTypeObject*>(exit_view_type_info()->type);
        if (PyObject_TypeCheck(self, const_cast<PyTypeObject*>(type)) == 0) {
            throw py::type_error("an ExitView's field, read from a " +
                                 std::string(Py_TYPE(self)->tp_name));
        }
        return field(view_of(self));
    });
}

PyObject* get_kind(PyObject* /*module*/, PyObject* self) {
    return get_field(self, [](ExitView& v) { return kind_object(v.e.kind()).inc_ref().ptr(); });
}

PyObject* get_reason(PyObject* /*module*/, PyObject* self) {
    return get_field(self, [](ExitView& v) {
        if (!v.reason) v.reason = exit_variant(v.e.delivered.reason);
        return v.reason.inc_ref().ptr();
    });
}

PyObject* get_resolved(PyObject* /*module*/, PyObject* self) {
    return get_field(self, [](ExitView& v) { return PyBool_FromLong(v.resolved ? 1 : 0); });
}

PyObject* get_seq(PyObject* /*module*/, PyObject* self) {
    return get_field(self,
                     [](ExitView& v) { return PyLong_FromUnsignedLongLong(v.e.delivered.seq); });
}

PyMethodDef fast_fields[] = {
    {"kind", get_kind, METH_O,
     "kind(self: armvcpu._core.ExitView) -> armvcpu._core.ExitKind\n\nThe exit's kind."},
    {"reason", get_reason, METH_O,
     "reason(self: armvcpu._core.ExitView) -> typing.Any\n\nThe decoded reason "
     "(_core.Hypercall, ...), made on first use."},
    {"resolved", get_resolved, METH_O,
     "resolved(self: armvcpu._core.ExitView) -> bool\n\nWhether the exit was answered."},
    {"seq", get_seq, METH_O,
     "seq(self: armvcpu._core.ExitView) -> int\n\nThe exit's sequence number on its vCPU "
     "(1 for the first)."},
};

PyMethodDef resume_def = {
    "resume", reinterpret_cast<PyCFunction>(reinterpret_cast<void (*)()>(&resume_vectorcall)),
    METH_FASTCALL | METH_KEYWORDS,
    "resume(x0=None, **regs): let the guest continue (see armvcpu.exits.Exit)."};

// ---------------------------------------------------------------------------
// ExitStream: the shared-memory half of Hypervisor.exits() in one call per
// exit. next() answers the exit it handed out last with the firmware's
// default if the loop left it open, waits for the next record (GIL released)
// and makes its Exit object directly: no Python frame, no argument parsing,
// no pybind11 __init__ dispatch. A plain CPython type, not a pybind11 class,
// so that next() is a METH_O call.

// An instance of `type` (ExitView or a Python subclass) owning `value`: what
// pybind11's __init__ does with a factory's result, without the call.
static_assert(std::is_same_v<py::class_<ExitView>::holder_type, std::unique_ptr<ExitView>>,
              "new_exit_object constructs ExitView's holder in place");

PyObject* new_exit_object(PyTypeObject* type, std::unique_ptr<ExitView> value) {
    static PyObject* const no_args = PyTuple_New(0);
    PyObject* obj = type->tp_new(type, no_args, nullptr);
    if (obj == nullptr) throw py::error_already_set();
    auto* inst = reinterpret_cast<py::detail::instance*>(obj);
    const py::detail::type_info* info = exit_view_type_info();
    py::detail::value_and_holder v_h = inst->simple_layout
                                           ? py::detail::value_and_holder(inst, info, 0, 0)
                                           : inst->get_value_and_holder(info, true);
    // The holder (a unique_ptr) owns the value from here. The instance is
    // not entered in pybind11's registry of C++ pointers: that map serves
    // casts of a C++ pointer back to its Python object, which no ExitView
    // ever needs, and an insert and an erase per exit cost more than the
    // rest of making it. (Unregistered, pybind11's dealloc skips the erase.)
    ExitView* raw = value.release();
    v_h.value_ptr() = raw;
    new (std::addressof(v_h.holder<std::unique_ptr<ExitView>>())) std::unique_ptr<ExitView>(raw);
    v_h.set_holder_constructed();
    return obj;
}

struct StreamState {
    py::object exit_type;  // the class of the exits made (armvcpu.exits.Exit)
    py::object ram;        // the shared mapping
    py::object resolver;
    py::object session;
    py::list last_seqs;   // the transport's list (each slot's last seq), kept in step
    py::object previous;  // the exit handed out last, until it is settled
    std::vector<std::size_t> offsets;
    int doorbell_fd = -1;
    std::optional<std::size_t> sleeping_offset;
    std::vector<ExitRecord*> records;  // scratch for each wait
    std::vector<std::uint64_t> lasts;
};

struct ExitStreamObject {
    PyObject_HEAD StreamState* state;
};

StreamState& state_of(PyObject* self) { return *reinterpret_cast<ExitStreamObject*>(self)->state; }

// The previous exit, left open by the loop, gets the firmware's default.
// True when that answer went through the session (it may end the VM).
bool settle(StreamState& s) {
    if (!s.previous) return false;
    const py::object previous = std::move(s.previous);
    s.previous = py::object();
    ExitView& v = view_of(previous.ptr());
    if (v.resolved) return false;
    answer_with(previous, HostAction::Default);
    return v.e.may_stop_vm() || v.ram.is_none();
}

// The mapping for the length of one call: held, it cannot be closed or
// resized under the wait (the stream does not keep it between calls, so
// that the session can close it).
class MappingView {
public:
    explicit MappingView(const py::object& ram) {
        if (PyObject_GetBuffer(ram.ptr(), &view_, PyBUF_WRITABLE) != 0) {
            throw py::error_already_set();
        }
    }
    MappingView(const MappingView&) = delete;
    MappingView& operator=(const MappingView&) = delete;
    ~MappingView() { PyBuffer_Release(&view_); }
    char* at(std::size_t offset, std::size_t size) const {
        if (offset + size > static_cast<std::size_t>(view_.len)) {
            throw py::value_error("offset " + std::to_string(offset) +
                                  " lies outside the shared mapping");
        }
        return static_cast<char*>(view_.buf) + offset;
    }

private:
    Py_buffer view_{};
};

// The Exit for the record in `slot`, whose seq the caller has taken.
PyObject* make_exit(StreamState& s, const MappingView& mapping, std::size_t slot) {
    const ExitRecord r =
        *reinterpret_cast<const ExitRecord*>(mapping.at(s.offsets[slot], sizeof(ExitRecord)));
    check_record(r);
    auto value = std::make_unique<ExitView>();
    value->e = HostExit::from_record(r);
    value->ram = s.ram;
    value->offset = s.offsets[slot];
    value->resolver = s.resolver;
    value->session = s.session;
    value->slot = static_cast<std::uint32_t>(slot);
    value->delivered_ns = now_ns();
    PyObject* obj =
        new_exit_object(reinterpret_cast<PyTypeObject*>(s.exit_type.ptr()), std::move(value));
    s.previous = py::reinterpret_borrow<py::object>(obj);
    return obj;
}

// How many looks next() takes before it releases the GIL to wait: about
// 1-2 us of reads of a cache line the firmware is about to write.
constexpr int kLooksWithGil = 32;

PyObject* stream_next(PyObject* self, PyObject* timeout_arg) {
    return guarded([&]() -> PyObject* {
        StreamState& s = state_of(self);
        const double timeout = PyFloat_AsDouble(timeout_arg);
        if (timeout == -1.0 && PyErr_Occurred() != nullptr) throw py::error_already_set();
        // An answer through the session may end the VM: the loop looks at
        // that before waiting again.
        if (settle(s)) Py_RETURN_NONE;
        const std::size_t count = s.offsets.size();
        if (static_cast<std::size_t>(PyList_GET_SIZE(s.last_seqs.ptr())) != count) {
            throw py::value_error("the transport's last_seqs no longer has one entry per record");
        }
        const MappingView mapping(s.ram);
        for (std::size_t i = 0; i < count; ++i) {
            s.records[i] =
                reinterpret_cast<ExitRecord*>(mapping.at(s.offsets[i], sizeof(ExitRecord)));
            s.lasts[i] = PyLong_AsUnsignedLongLong(
                PyList_GET_ITEM(s.last_seqs.ptr(), static_cast<Py_ssize_t>(i)));
            if (PyErr_Occurred() != nullptr) throw py::error_already_set();
        }
        auto* sleeping = s.sleeping_offset
                             ? reinterpret_cast<std::uint64_t*>(mapping.at(*s.sleeping_offset, 8))
                             : nullptr;
        std::uint64_t seq = 0;
        // Dense exits come a microsecond or two after the answer: look for
        // a while with the GIL held (handing it over and back costs about
        // as much as such a look), then wait without it.
        std::size_t hit = count;
        for (int look = 0; look < kLooksWithGil && hit == count; ++look) {
            hit = find_exit(s.records.data(), s.lasts.data(), count, seq);
        }
        if (hit == count) {
            py::gil_scoped_release release;
            hit = wait_for_exit(s.records.data(), s.lasts.data(), count, timeout,
                                sleeping == nullptr ? -1 : s.doorbell_fd, sleeping, seq);
        }
        if (hit == count) Py_RETURN_NONE;
        PyObject* seq_obj = PyLong_FromUnsignedLongLong(seq);
        if (seq_obj == nullptr) throw py::error_already_set();
        PyList_SetItem(s.last_seqs.ptr(), static_cast<Py_ssize_t>(hit), seq_obj);  // steals
        return make_exit(s, mapping, hit);
    });
}

PyObject* stream_settle(PyObject* self, PyObject* /*unused*/) {
    return guarded([&]() -> PyObject* {
        settle(state_of(self));
        Py_RETURN_NONE;
    });
}

PyObject* stream_view(PyObject* self, PyObject* slot_arg) {
    return guarded([&]() -> PyObject* {
        StreamState& s = state_of(self);
        const Py_ssize_t slot = PyLong_AsSsize_t(slot_arg);
        if (slot == -1 && PyErr_Occurred() != nullptr) throw py::error_already_set();
        if (slot < 0 || static_cast<std::size_t>(slot) >= s.offsets.size()) {
            throw py::index_error("no exit record " + std::to_string(slot));
        }
        settle(s);
        const MappingView mapping(s.ram);
        return make_exit(s, mapping, static_cast<std::size_t>(slot));
    });
}

void stream_dealloc(PyObject* self) {
    auto* obj = reinterpret_cast<ExitStreamObject*>(self);
    PyTypeObject* type = Py_TYPE(self);
    delete obj->state;
    type->tp_free(self);
    Py_DECREF(type);
}

PyMethodDef stream_methods[] = {
    {"next", stream_next, METH_O,
     "next(timeout): answer the exit handed out last with the default if it is still open, "
     "then wait up to timeout seconds for the next exit record: its Exit, or None (none "
     "came, or the default answer went through the session, which may have ended the VM)."},
    {"settle", stream_settle, METH_NOARGS,
     "Answer the exit handed out last with the default if it is still open."},
    {"view", stream_view, METH_O,
     "view(slot): the Exit for the record in slot, whose seq the transport has taken "
     "(settles the previous one first)."},
    {nullptr, nullptr, 0, nullptr}};

PyType_Slot stream_slots[] = {
    {Py_tp_dealloc, reinterpret_cast<void*>(&stream_dealloc)},
    {Py_tp_methods, stream_methods},
    {Py_tp_doc, const_cast<char*>("The shared-memory exit loop of Hypervisor.exits(); made by "
                                  "_core.exit_stream().")},
    {0, nullptr}};

PyType_Spec stream_spec = {"armvcpu._core.ExitStream", sizeof(ExitStreamObject), 0,
                           Py_TPFLAGS_DEFAULT, stream_slots};

}  // namespace

void bind_exit_view(py::module_& m) {
    auto cls =
        py::class_<ExitView>(m, "ExitView", R"doc(
One VM exit as the host holds it: the record as delivered (fields read from
a copy, the reason decoded on first use) and the answer being built.
armvcpu.exits.Exit is its Python subclass and the documented interface.
)doc")
            .def(py::init([](const py::buffer& ram, std::size_t offset, std::uint32_t slot,
                             py::object resolver, py::object session) {
                     const ExitRecord r = *RecordInBuffer(ram, offset, false);
                     check_record(r);
                     ExitView v;
                     v.e = HostExit::from_record(r);
                     v.ram = ram;
                     v.offset = offset;
                     v.resolver = std::move(resolver);
                     v.session = std::move(session);
                     v.slot = slot;
                     v.delivered_ns = now_ns();
                     return v;
                 }),
                 py::arg("ram"), py::arg("offset"), py::arg("slot"), py::arg("resolver"),
                 py::arg("session") = py::none(),
                 "The exit in the shared record at ram[offset:] (copied now; answered in place).")
            .def(py::init([](const ExitRecord& record, py::object resolver, const py::object& raw,
                             py::object session) {
                     const ExitRecord delivered =
                         raw.is_none() ? record : from_buffer<ExitRecord>(raw, "ExitRecord");
                     check_record(delivered);
                     ExitView v;
                     v.e = HostExit{delivered, record};
                     v.resolver = std::move(resolver);
                     v.session = std::move(session);
                     v.delivered_ns = now_ns();
                     return v;
                 }),
                 py::arg("record"), py::arg("resolver"), py::arg("raw") = py::none(),
                 py::arg("session") = py::none(),
                 "An exit from a record (its answer so far) and the bytes as delivered.")
            .def_property_readonly("vm_id", [](const ExitView& v) { return v.e.delivered.vm_id; })
            .def_property_readonly("vcpu_id",
                                   [](const ExitView& v) { return v.e.delivered.vcpu_id; })
            .def_property_readonly(
                "elr", [](const ExitView& v) { return v.e.delivered.elr; },
                "ELR_EL2 as the exception left it.")
            .def_property_readonly(
                "pc", [](const ExitView& v) { return v.e.instruction_address(); },
                "The instruction that made the exit (for HVC/SVC one before ELR_EL2).")
            .def_property_readonly(
                "return_address",
                [](ExitView& v) {
                    sync_frame(v);
                    return v.e.answer.frame.elr;
                },
                "Where the guest resumes (the frame's ELR, with the host's edits).")
            .def_property_readonly(
                "esr", [](const ExitView& v) { return Esr{v.e.delivered.esr}; }, "ESR_EL2 decoded.")
            .def_property_readonly("syndrome",
                                   [](const ExitView& v) {
                                       const ExitRecord& r = v.e.delivered;
                                       return Syndrome{r.esr, r.far, r.hpfar};
                                   })
            .def_property_readonly(
                "raw", [](const ExitView& v) { return to_bytes(v.e.delivered); },
                "The record's bytes as the firmware delivered them.")
            .def_property_readonly(
                "record",
                [](ExitView& v) {
                    sync_frame(v);
                    ExitRecord r = v.e.answer;
                    r.ack = v.e.delivered.seq;  // the answer acknowledges this exit
                    return r;
                },
                "A copy of the record as answered so far (action, frame, far).")
            .def_property(
                "frame",
                [](ExitView& v) {
                    if (v.frame.is_none()) v.frame = py::cast(v.e.answer.frame);
                    return v.frame;
                },
                [](ExitView& v, const py::object& value) {
                    if (!py::isinstance<TrapFrame>(value)) {
                        throw py::type_error("an exit's frame is a TrapFrame");
                    }
                    v.frame = value;
                },
                "The guest's registers (a copy: edits reach the guest when the exit is answered).")
            .def_readwrite("slot", &ExitView::slot,
                           "Which exit record (physical CPU) it came through.")
            .def_readonly("session", &ExitView::session)
            .def_readwrite("delivered_ns", &ExitView::delivered_ns)
            .def_readwrite("answered_ns", &ExitView::answered_ns)
            .def(
                "_answer_step",
                [](const py::object& self, const py::kwargs& regs) {
                    auto& v = self.cast<ExitView&>();
                    if (v.resolved) already_answered(v);
                    sync_frame(v);
                    if (!regs.empty()) {
                        const KeywordArgs kw(regs);
                        apply_registers(v, py::handle(), kw.names.ptr(), kw.values.data());
                    }
                    v.e.answer.action = HostAction::Step;
                    answer(self, v);
                },
                "Answer with a single step (see armvcpu.exits.Exit.step).")
            .def(
                "resume_default",
                [](const py::object& self) { answer_with(self, HostAction::Default); },
                "The firmware's own answer (see armvcpu.exits.Exit).")
            .def(
                "stop", [](const py::object& self) { answer_with(self, HostAction::Stop); },
                "Stop the VM at this exit.")
            .def(
                "inject_undef",
                [](const py::object& self) { answer_with(self, HostAction::InjectUndef); },
                "Answer with an Undefined Instruction exception taken to the guest's EL1.")
            .def(
                "_answer_abort",
                [](const py::object& self, bool fetch, const py::object& address) {
                    auto& v = self.cast<ExitView&>();
                    if (v.resolved) already_answered(v);
                    if (!address.is_none()) v.e.answer.far = address.cast<std::uint64_t>();
                    answer_with(self, fetch ? HostAction::InjectInstructionAbort
                                            : HostAction::InjectDataAbort);
                },
                py::arg("fetch"), py::arg("address") = py::none(),
                "Answer with a synchronous external abort (see armvcpu.exits.Exit.inject_abort).")
            .def(
                "_answer_with",
                [](const py::object& self, HostAction action) { answer_with(self, action); },
                py::arg("action"),
                "Answer with a host action of its own (e.g. a snapshot's Restore).")
            .def("_check_open", [](const ExitView& v) {
                if (v.resolved) already_answered(v);
            });
    const py::object stream_type = py::reinterpret_steal<py::object>(PyType_FromSpec(&stream_spec));
    if (!stream_type) throw py::error_already_set();
    m.attr("ExitStream") = stream_type;
    m.def(
        "exit_stream",
        [stream_type, cls](const py::type& exit_type, const py::buffer& ram,
                           const std::vector<std::size_t>& offsets, const py::list& last_seqs,
                           py::object resolver, py::object session, int doorbell_fd,
                           std::optional<std::size_t> sleeping_offset) {
            if (PyType_IsSubtype(reinterpret_cast<PyTypeObject*>(exit_type.ptr()),
                                 reinterpret_cast<PyTypeObject*>(cls.ptr())) == 0) {
                throw py::type_error("exit_type must be ExitView or a subclass of it");
            }
            if (offsets.empty() || offsets.size() != static_cast<std::size_t>(py::len(last_seqs))) {
                throw py::value_error("one last seq per record offset, and at least one record");
            }
            {
                const MappingView mapping(ram);
                for (std::size_t off : offsets) {
                    if (off % 8 != 0) {
                        throw py::value_error("exit record offset " + std::to_string(off) +
                                              " is not 8-byte aligned");
                    }
                    mapping.at(off, sizeof(ExitRecord));
                }
                if (doorbell_fd >= 0) {
                    if (!sleeping_offset || *sleeping_offset % 8 != 0) {
                        throw py::value_error(
                            "a doorbell fd needs the aligned offset of the sleeping word");
                    }
                    mapping.at(*sleeping_offset, 8);
                }
            }
            auto state = std::make_unique<StreamState>();
            state->exit_type = exit_type;
            state->ram = ram;
            state->offsets = offsets;
            state->last_seqs = last_seqs;
            state->resolver = std::move(resolver);
            state->session = std::move(session);
            state->doorbell_fd = doorbell_fd;
            state->sleeping_offset = doorbell_fd >= 0 ? sleeping_offset : std::nullopt;
            state->records.resize(offsets.size());
            state->lasts.resize(offsets.size());
            auto* type = reinterpret_cast<PyTypeObject*>(stream_type.ptr());
            PyObject* obj = type->tp_alloc(type, 0);
            if (obj == nullptr) throw py::error_already_set();
            reinterpret_cast<ExitStreamObject*>(obj)->state = state.release();
            return py::reinterpret_steal<py::object>(obj);
        },
        py::arg("exit_type"), py::arg("ram"), py::arg("offsets"), py::arg("last_seqs"),
        py::arg("resolver"), py::arg("session") = py::none(), py::arg("doorbell_fd") = -1,
        py::arg("sleeping_offset") = py::none(),
        "An ExitStream over the exit records at `offsets` in the shared mapping `ram`, making "
        "`exit_type` objects answered through `resolver` (see ExitView); `last_seqs` is the "
        "transport's list of the seq each record was last taken at, which it updates.");
    for (PyMethodDef& def : fast_fields) add_c_property(cls, def);
    // resume() goes in as a plain method descriptor (see resume_vectorcall).
    const py::object resume_method = py::reinterpret_steal<py::object>(
        PyDescr_NewMethod(reinterpret_cast<PyTypeObject*>(cls.ptr()), &resume_def));
    if (!resume_method) throw py::error_already_set();
    cls.attr("resume") = resume_method;
}

}  // namespace armvcpu::py_bind
