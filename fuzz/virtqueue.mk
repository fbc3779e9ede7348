# libFuzzer target for the split-virtqueue core (fuzz/fuzz_virtqueue.c), built with clang
# and AddressSanitizer + UndefinedBehaviorSanitizer into build-fuzz/. The top Makefile
# includes this fragment.
#   make fuzz-virtqueue                        build build-fuzz/fuzz-virtqueue
#   make fuzz-virtqueue-run [FUZZ_SECONDS=60]  run it for a bounded time on the seeds in
#                                              fuzz/corpus/virtqueue (new inputs go to
#                                              build-fuzz/corpus-virtqueue)
# A crash leaves crash-<hash> in the current directory; replay it with
#   build-fuzz/fuzz-virtqueue crash-<hash>
# and turn it into a test in tests/unit/test_virtqueue.c.

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
VQ_FUZZ_BUILD ?= build-fuzz
VQ_FUZZ_CFLAGS := -std=gnu11 -g -O1 -Wall -Wextra -Werror -Wno-unused-parameter \
		  -D_GNU_SOURCE -Isrc -fsanitize=fuzzer,address,undefined \
		  -fno-sanitize-recover=all -fno-omit-frame-pointer
VQ_FUZZ_SRCS := fuzz/fuzz_virtqueue.c src/virtio/virtqueue.c src/core/guest_mem.c \
		src/core/device.c src/util/err.c

.PHONY: fuzz-virtqueue fuzz-virtqueue-run
fuzz-virtqueue: $(VQ_FUZZ_BUILD)/fuzz-virtqueue

$(VQ_FUZZ_BUILD)/fuzz-virtqueue: $(VQ_FUZZ_SRCS) $(wildcard src/virtio/*.h src/core/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(VQ_FUZZ_CFLAGS) -o $@ $(VQ_FUZZ_SRCS)

fuzz-virtqueue-run: $(VQ_FUZZ_BUILD)/fuzz-virtqueue
	@mkdir -p $(VQ_FUZZ_BUILD)/corpus-virtqueue
	$< -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -timeout=10 \
		$(VQ_FUZZ_BUILD)/corpus-virtqueue fuzz/corpus/virtqueue
