# Sourced by the launch scripts: the process settings a fast step on a CPU host needs.
# XLA:CPU allocates a step's temporary buffers afresh every step (about 1 GB for the ResNet-18
# step of bench/train_step.py), and glibc's malloc maps blocks that large anew each time, so
# the step pays a page fault per 4 KiB it touches: about 10% of that step. With this glibc
# tunable (glibc 2.35+; older ones ignore it) malloc asks for transparent huge pages there
# (used where /sys/kernel/mm/transparent_hugepage/enabled says madvise or always).
if [[ "${GLIBC_TUNABLES:-}" != *glibc.malloc.hugetlb=* ]]; then
  export GLIBC_TUNABLES="${GLIBC_TUNABLES:+$GLIBC_TUNABLES:}glibc.malloc.hugetlb=1"
fi
