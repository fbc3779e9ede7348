/* libFuzzer target for everything kvmini reads from a kernel file before the guest runs:
 * the bzImage setup header, the ELF program headers and notes (Linux 64-bit and PVH entry),
 * the payload decompressors, and the boot-table writer, on 32 MiB of fake guest memory.
 * `make fuzz` builds it into build-fuzz/; `make fuzz-run FUZZ_SECONDS=N` runs it on the
 * corpus from fuzz/make_seeds.c. A crash is a bug: its input becomes a unit test. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "arch/x86/boot.h"
#include "arch/x86/bzimage.h"
#include "util/log.h"

#define FUZZ_RAM (32u << 20)
/* Raw payloads get a smaller limit: enough to reach every decoder state, fast per input. */
#define FUZZ_RAW_MAX_OUT (4u << 20)

struct fuzz_state {
	struct guest_mem mem;
};

static struct fuzz_state *fuzz_state(void)
{
	/* libFuzzer's entry points take no context, so the one VM lives here. */
	static struct fuzz_state st;
	if (st.mem.nregions == 0) {
		void *ram = mmap(NULL, FUZZ_RAM, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (ram == MAP_FAILED || guest_mem_add_region(&st.mem, 0, FUZZ_RAM, ram) < 0)
			abort();
	}
	return &st;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	log_set_level(LOG_ERROR); /* the loader's warnings are expected here */
	fuzz_state();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_state *st = fuzz_state();
	static const uint8_t initrd[64] = {'i', 'n', 'i', 't', 'r', 'd'};
	struct x86_boot_args a = {.kernel = data,
				  .kernel_size = size,
				  .kernel_name = "fuzz",
				  .initrd = initrd,
				  .initrd_size = sizeof(initrd),
				  .cmdline = "console=ttyS0",
				  .decompress = BOOT_DECOMPRESS_AUTO,
				  .ncpus = 2};
	struct x86_boot_setup s;
	struct errbuf e;
	x86_boot_load(&st->mem, &a, &s, &e);

	/* The guest-decompressor path of a well-formed bzImage, too. */
	struct bzimage_info bz;
	if (bzimage_parse(data, size, &bz, &e) == 0) {
		a.decompress = BOOT_DECOMPRESS_GUEST;
		x86_boot_load(&st->mem, &a, &s, &e);
	}

	/* The decoders on raw input, without a bzImage around it. */
	enum payload_format f = payload_detect(data, size);
	if (f != PAYLOAD_UNKNOWN && size) {
		uint8_t *out = NULL;
		size_t out_len = 0;
		if (payload_decompress(data, size, f, FUZZ_RAW_MAX_OUT, &out, &out_len, &e) == 0)
			free(out);
	}
	return 0;
}
