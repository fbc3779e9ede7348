# libFuzzer target for the QMP parser and dispatcher (fuzz/fuzz_qmp.c), built with clang and
# AddressSanitizer + UndefinedBehaviorSanitizer into build-fuzz/. The top Makefile includes
# this fragment.
#   make fuzz-qmp                        build build-fuzz/fuzz-qmp
#   make fuzz-qmp-run [FUZZ_SECONDS=60]  run it for a bounded time on the seeds in
#                                        fuzz/corpus/qmp (new inputs go to
#                                        build-fuzz/corpus-qmp)
# A crash leaves crash-<hash> in the current directory; replay it with
#   build-fuzz/fuzz-qmp crash-<hash>
# and turn it into a case in tests/qmp/test_qmp.py.

FUZZ_CC ?= clang
FUZZ_SECONDS ?= 60
QMP_FUZZ_BUILD ?= build-fuzz
QMP_FUZZ_CFLAGS := -std=gnu11 -g -O1 -Wall -Wextra -Werror -Wno-unused-parameter \
		   -D_GNU_SOURCE -Isrc -fsanitize=fuzzer,address,undefined \
		   -fno-sanitize-recover=all -fno-omit-frame-pointer
QMP_FUZZ_SRCS := fuzz/fuzz_qmp.c src/vmm/qmp.c src/vmm/hmp.c src/vmm/snapdir.c src/core/power.c src/config_keyed.c \
		 src/core/loop.c src/util/err.c src/util/log.c

.PHONY: fuzz-qmp fuzz-qmp-run
fuzz-qmp: $(QMP_FUZZ_BUILD)/fuzz-qmp

$(QMP_FUZZ_BUILD)/fuzz-qmp: $(QMP_FUZZ_SRCS) $(wildcard src/vmm/*.h src/core/*.h src/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(QMP_FUZZ_CFLAGS) -o $@ $(QMP_FUZZ_SRCS) -lcjson -lpthread

fuzz-qmp-run: $(QMP_FUZZ_BUILD)/fuzz-qmp
	@mkdir -p $(QMP_FUZZ_BUILD)/corpus-qmp
	$< -max_total_time=$(FUZZ_SECONDS) -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
		$(QMP_FUZZ_BUILD)/corpus-qmp fuzz/corpus/qmp
