"""The tools room: the ``armvcpu`` command line, benchmarks, the guest fuzzer, the
demo, the gdb-multiarch extension and the pytest plugin. Nothing below imports it."""
