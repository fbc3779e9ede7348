# libFuzzer target for the virtqueue + virtio-blk request path (fuzz/fuzz_blk.c), built with
# clang and AddressSanitizer + UndefinedBehaviorSanitizer into build-fuzz/. The top Makefile
# includes this fragment.
#   make fuzz-blk                        build build-fuzz/fuzz-blk
#   make fuzz-blk-run [FUZZ_SECONDS=60]  run it for a bounded time on the seeds in
#                                        fuzz/corpus/blk (new inputs go to
#                                        build-fuzz/corpus-blk)
# A crash leaves crash-<hash> in the current directory; replay it with
#   build-fuzz/fuzz-blk crash-<hash>
# and turn it into a test in tests/unit/test_blk.c.

BLK_FUZZ_SRCS := fuzz/fuzz_blk.c src/virtio/blk.c src/virtio/virtio.c src/virtio/virtqueue.c \
		 src/backend/disk.c src/core/guest_mem.c src/core/device.c src/config_keyed.c \
		 src/util/err.c src/util/log.c

.PHONY: fuzz-blk fuzz-blk-run
fuzz-blk: $(VQ_FUZZ_BUILD)/fuzz-blk

$(VQ_FUZZ_BUILD)/fuzz-blk: $(BLK_FUZZ_SRCS) $(wildcard src/virtio/*.h src/core/*.h src/backend/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(VQ_FUZZ_CFLAGS) -o $@ $(BLK_FUZZ_SRCS) -luring -lpthread

fuzz-blk-run: $(VQ_FUZZ_BUILD)/fuzz-blk
	@mkdir -p $(VQ_FUZZ_BUILD)/corpus-blk
	$< -max_total_time=$(FUZZ_SECONDS) -max_len=8192 -timeout=10 \
		$(VQ_FUZZ_BUILD)/corpus-blk fuzz/corpus/blk
