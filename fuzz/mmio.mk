# libFuzzer target for the virtio-mmio register file (fuzz/fuzz_mmio.c), built with clang
# and AddressSanitizer + UndefinedBehaviorSanitizer into build-fuzz/. The top Makefile
# includes this fragment.
#   make fuzz-mmio                        build build-fuzz/fuzz-mmio
#   make fuzz-mmio-run [FUZZ_SECONDS=60]  run it for a bounded time on the seeds in
#                                         fuzz/corpus/mmio (new inputs go to
#                                         build-fuzz/corpus-mmio)
# A crash leaves crash-<hash> in the current directory; replay it with
#   build-fuzz/fuzz-mmio crash-<hash>
# and turn it into a test in tests/unit/test_virtio_mmio.c.

MMIO_FUZZ_BUILD ?= build-fuzz
MMIO_FUZZ_CFLAGS := -std=gnu11 -g -O1 -Wall -Wextra -Werror -Wno-unused-parameter \
		    -D_GNU_SOURCE -Isrc -fsanitize=fuzzer,address,undefined \
		    -fno-sanitize-recover=all -fno-omit-frame-pointer
MMIO_FUZZ_SRCS := fuzz/fuzz_mmio.c src/virtio/mmio.c src/virtio/virtio.c \
		  src/virtio/virtqueue.c src/core/bus.c src/core/irq.c src/core/ioeventfd.c \
		  src/core/loop.c src/core/guest_mem.c src/core/device.c src/util/err.c \
		  src/util/log.c

.PHONY: fuzz-mmio fuzz-mmio-run
fuzz-mmio: $(MMIO_FUZZ_BUILD)/fuzz-mmio

$(MMIO_FUZZ_BUILD)/fuzz-mmio: $(MMIO_FUZZ_SRCS) $(wildcard src/virtio/*.h src/core/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(MMIO_FUZZ_CFLAGS) -o $@ $(MMIO_FUZZ_SRCS) -lpthread

fuzz-mmio-run: $(MMIO_FUZZ_BUILD)/fuzz-mmio
	@mkdir -p $(MMIO_FUZZ_BUILD)/corpus-mmio
	$< -max_total_time=$(FUZZ_SECONDS) -max_len=4096 -timeout=10 \
		$(MMIO_FUZZ_BUILD)/corpus-mmio fuzz/corpus/mmio
