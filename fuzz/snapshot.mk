# libFuzzer target for the snapshot reader (fuzz/fuzz_snapshot.c), built with clang and
# AddressSanitizer + UndefinedBehaviorSanitizer into build-fuzz/. The top Makefile
# includes this fragment.
#   make fuzz-snapshot                        build build-fuzz/fuzz-snapshot
#   make fuzz-snapshot-run [FUZZ_SECONDS=60]  run it for a bounded time on the seed in
#                                             fuzz/corpus/snapshot (a valid snapshot with
#                                             one page of RAM; new inputs go to
#                                             build-fuzz/corpus-snapshot)
# A crash leaves crash-<hash> in the current directory; replay it with
#   build-fuzz/fuzz-snapshot crash-<hash>
# and turn it into a test in tests/unit/test_snapfmt.c.

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
SNAP_FUZZ_BUILD ?= build-fuzz
SNAP_FUZZ_CFLAGS := -std=gnu11 -g -O1 -Wall -Wextra -Werror -Wno-unused-parameter \
		    -D_GNU_SOURCE -Isrc -fsanitize=fuzzer,address,undefined \
		    -fno-sanitize-recover=all -fno-omit-frame-pointer
SNAP_FUZZ_SRCS := fuzz/fuzz_snapshot.c src/core/snapfmt.c src/util/err.c

.PHONY: fuzz-snapshot fuzz-snapshot-run
fuzz-snapshot: $(SNAP_FUZZ_BUILD)/fuzz-snapshot

$(SNAP_FUZZ_BUILD)/fuzz-snapshot: $(SNAP_FUZZ_SRCS) src/core/snapfmt.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(SNAP_FUZZ_CFLAGS) -o $@ $(SNAP_FUZZ_SRCS)

fuzz-snapshot-run: $(SNAP_FUZZ_BUILD)/fuzz-snapshot
	@mkdir -p $(SNAP_FUZZ_BUILD)/corpus-snapshot
	$< -max_total_time=$(FUZZ_SECONDS) -max_len=16384 -timeout=10 \
		$(SNAP_FUZZ_BUILD)/corpus-snapshot fuzz/corpus/snapshot
