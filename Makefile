# kvmini build. `make` builds the VMM and the test guests; `make tests` the test binaries.
# SAN=1 builds everything host-side with AddressSanitizer + UndefinedBehaviorSanitizer
# into build-san/ (the guests are freestanding and never sanitized).

CC      ?= gcc
SAN     ?= 0
BUILD   ?= $(if $(filter 1,$(SAN)),build-san,build)
GUESTS  := $(BUILD)/guests

CFLAGS  := -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -D_GNU_SOURCE -Isrc -MMD -MP
LDLIBS  := -lpthread -ldl -luring -lcjson
# Only the tests link the compression libraries; kvmini loads them when it needs them.
COMPRESS_LIBS := -llzma -lz -lzstd -llz4 -lbz2
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
endif

SRCS     := $(shell find src -name '*.c' | sort)
LIB_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(filter-out src/main.c,$(SRCS)))
UNIT_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/unit/*.c))
INTEG_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/integration/*.c))
LINUX_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard tests/linux/*.c))

.PHONY: all guests tests clean format check-format
all: $(BUILD)/kvmini

# The demo guest is built by the guest kit and embedded into the binary with .incbin.
guests:
	$(MAKE) -C tests/guests OUT=$(abspath $(GUESTS))

$(GUESTS)/demo.elf: guests ;

$(BUILD)/src/demo_blob.o: src/demo_blob.S $(GUESTS)/demo.elf
	@mkdir -p $(dir $@)
	$(CC) -c -DDEMO_ELF='"$(abspath $(GUESTS))/demo.elf"' -o $@ $<

$(BUILD)/kvmini: $(LIB_OBJS) $(BUILD)/src/main.o $(BUILD)/src/demo_blob.o
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%.o: CFLAGS += -Itests

tests: $(BUILD)/kvmini $(BUILD)/unit-tests $(BUILD)/integration-tests $(BUILD)/linux-tests

$(BUILD)/unit-tests: $(UNIT_OBJS) $(LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(COMPRESS_LIBS) -lcriterion

$(BUILD)/integration-tests: $(INTEG_OBJS) $(BUILD)/tests/harness.o $(LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(COMPRESS_LIBS) -lcriterion

$(BUILD)/linux-tests: $(LINUX_OBJS) $(BUILD)/tests/harness.o $(LIB_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(COMPRESS_LIBS) -lcriterion

# libFuzzer target for the kernel parsers and decompressors (fuzz/fuzz_boot.c), with ASan and
# UBSan, in build-fuzz/. `make fuzz-run FUZZ_SECONDS=N` fuzzes for N seconds from a seed
# corpus fuzz/make_seeds.c writes; a crash leaves its input in build-fuzz/crash-*.
FUZZ_CC      ?= clang-14
FUZZ_SECONDS ?= 60
FUZZ_SRCS    := src/arch/x86/boot.c src/arch/x86/bzimage.c src/arch/x86/decompress.c \
	src/arch/x86/acpi.c src/arch/x86/mptable.c src/core/guest_mem.c src/util/err.c \
	src/util/file.c src/util/log.c
FUZZ_CFLAGS  := -std=gnu11 -O1 -g -Wall -Wextra -Werror -Wno-unused-parameter -D_GNU_SOURCE \
	-Isrc -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
.PHONY: fuzz fuzz-run
fuzz: build-fuzz/fuzz-boot build-fuzz/make-seeds
build-fuzz/fuzz-boot: fuzz/fuzz_boot.c $(FUZZ_SRCS) $(wildcard src/*/*.h src/*/*/*.h src/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ fuzz/fuzz_boot.c $(FUZZ_SRCS) -ldl -lpthread
build-fuzz/make-seeds: fuzz/make_seeds.c
	@mkdir -p $(dir $@)
	$(CC) -std=gnu11 -O2 -Wall -Wextra -Werror -o $@ $< $(COMPRESS_LIBS)
fuzz-run: fuzz
	rm -rf build-fuzz/seeds && mkdir -p build-fuzz/seeds build-fuzz/corpus
	build-fuzz/make-seeds build-fuzz/seeds
	build-fuzz/fuzz-boot -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
		-malloc_limit_mb=1024 -timeout=20 -print_final_stats=1 \
		-artifact_prefix=build-fuzz/ build-fuzz/corpus build-fuzz/seeds

clean:
	rm -rf build build-san build-fuzz

FORMAT_FILES = $(shell git ls-files --cached --others --exclude-standard '*.c' '*.h')
format:
	clang-format -i $(FORMAT_FILES)
check-format:
	clang-format --dry-run -Werror $(FORMAT_FILES)

include fuzz/virtqueue.mk
include fuzz/snapshot.mk
include fuzz/qmp.mk
include fuzz/mmio.mk
include fuzz/blk.mk
include fuzz/pci.mk
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
