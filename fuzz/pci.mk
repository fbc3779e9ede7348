# libFuzzer target for the PCI host bridge and the virtio-pci transport (fuzz/fuzz_pci.c),
# built with clang and AddressSanitizer + UndefinedBehaviorSanitizer into build-fuzz/. The
# top Makefile includes this fragment (FUZZ_CC, FUZZ_SECONDS, VQ_FUZZ_* come from
# fuzz/virtqueue.mk).
#   make fuzz-pci                        build build-fuzz/fuzz-pci
#   make fuzz-pci-run [FUZZ_SECONDS=60]  run it for a bounded time on the seeds in
#                                        fuzz/corpus/pci (new inputs go to build-fuzz/corpus-pci)
# A crash leaves crash-<hash> in the current directory; replay it with
#   build-fuzz/fuzz-pci crash-<hash>
# and turn it into a test in tests/unit/test_pci.c.

PCI_FUZZ_SRCS := fuzz/fuzz_pci.c src/devices/pci.c src/virtio/pci.c src/virtio/virtio.c \
		 src/virtio/virtqueue.c src/core/bus.c src/core/irq.c src/core/ioeventfd.c \
		 src/core/loop.c src/core/guest_mem.c src/core/device.c src/core/power.c \
		 src/devices/pm.c src/util/err.c src/util/log.c

.PHONY: fuzz-pci fuzz-pci-run
fuzz-pci: $(VQ_FUZZ_BUILD)/fuzz-pci

$(VQ_FUZZ_BUILD)/fuzz-pci: $(PCI_FUZZ_SRCS) $(wildcard src/virtio/*.h src/core/*.h src/devices/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(VQ_FUZZ_CFLAGS) -o $@ $(PCI_FUZZ_SRCS) -lpthread

fuzz-pci-run: $(VQ_FUZZ_BUILD)/fuzz-pci
	@mkdir -p $(VQ_FUZZ_BUILD)/corpus-pci
	$< -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
		$(VQ_FUZZ_BUILD)/corpus-pci fuzz/corpus/pci
