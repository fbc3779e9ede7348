#include <criterion/criterion.h>

#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include <bzlib.h>
#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

#include "arch/x86/boot.h"
#include "arch/x86/bzimage.h"
#include "util/file.h"

#define BZT_MAX_OUT (512u << 20)

/* ---- real Debian kernels ---- */

static const char *bzt_kernel_dir(void)
{
	const char *d = getenv("KVMINI_KERNEL_DIR");
	return d && *d ? d : "kernels";
}

static int bzt_ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Picks the highest-sorting vmlinuz-*-cloud-amd64 (cloud) or vmlinuz-*[0-9]-amd64 (generic). */
static void bzt_find_kernel(int cloud, char *path, size_t n)
{
	const char *dir = bzt_kernel_dir();
	char best[256] = "";
	DIR *d = opendir(dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d))) {
			const char *name = de->d_name;
			if (strncmp(name, "vmlinuz-", 8) || !bzt_ends_with(name, "-amd64"))
				continue;
			/* Generic ABI names end in a digit (6.1.0-56-amd64); -cloud and -rt not. */
			size_t nl = strlen(name);
			int generic = nl > 14 && name[nl - 7] >= '0' && name[nl - 7] <= '9';
			if (cloud ? !bzt_ends_with(name, "-cloud-amd64") : !generic)
				continue;
			if (strlen(name) < sizeof(best) && strcmp(name, best) > 0)
				strcpy(best, name);
		}
		closedir(d);
	}
	cr_assert(best[0],
		  "no Debian %s kernel (vmlinuz-*-%samd64) in '%s': run scripts/fetch-kernels.sh "
		  "(or set KVMINI_KERNEL_DIR)",
		  cloud ? "cloud" : "generic", cloud ? "cloud-" : "", dir);
	snprintf(path, n, "%s/%s", dir, best);
}

static uint8_t *bzt_load_kernel(int cloud, size_t *len, char *path, size_t pathlen)
{
	struct errbuf e = {{0}};
	uint8_t *img;
	bzt_find_kernel(cloud, path, pathlen);
	int r = read_whole_file(path, "kernel", &img, len, &e);
	cr_assert_eq(r, 0, "%s", e.msg);
	return img;
}

static uint32_t bzt_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static double bzt_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The load address a user passes to the guest must be where vmlinux wants to live, and the
 * entry must be inside what gets loaded. */
static void bzt_check_vmlinux(const uint8_t *p, size_t len, const struct bzimage_info *bi)
{
	cr_assert_geq(len, sizeof(Elf64_Ehdr));
	Elf64_Ehdr eh;
	memcpy(&eh, p, sizeof(eh));
	cr_assert(memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0, "vmlinux has no ELF magic");
	cr_assert_eq(eh.e_ident[EI_CLASS], ELFCLASS64);
	cr_assert_eq(eh.e_ident[EI_DATA], ELFDATA2LSB);
	cr_assert_eq(eh.e_machine, EM_X86_64, "e_machine %u", eh.e_machine);
	cr_assert_eq(eh.e_type, ET_EXEC, "e_type %u", eh.e_type);
	cr_assert_eq(eh.e_phentsize, sizeof(Elf64_Phdr));
	cr_assert_gt(eh.e_phnum, 0);
	cr_assert_leq(eh.e_phoff + (uint64_t)eh.e_phnum * sizeof(Elf64_Phdr), len);

	uint64_t lowest = UINT64_MAX, highest = 0;
	int first = -1;
	Elf64_Phdr first_ph = {0};
	for (int i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		memcpy(&ph, p + eh.e_phoff + (size_t)i * sizeof(ph), sizeof(ph));
		if (ph.p_type != PT_LOAD)
			continue;
		cr_assert_leq(ph.p_offset + ph.p_filesz, len, "PT_LOAD %d past end of vmlinux", i);
		if (first < 0) {
			first = i;
			first_ph = ph;
		}
		if (ph.p_paddr < lowest)
			lowest = ph.p_paddr;
		if (ph.p_paddr + ph.p_memsz > highest)
			highest = ph.p_paddr + ph.p_memsz;
	}
	cr_assert_geq(first, 0, "vmlinux has no PT_LOAD segment");
	cr_assert_eq(lowest, bi->pref_address,
		     "lowest PT_LOAD p_paddr 0x%llx != header pref_address 0x%llx",
		     (unsigned long long)lowest, (unsigned long long)bi->pref_address);
	cr_assert(eh.e_entry >= first_ph.p_paddr &&
		      eh.e_entry < first_ph.p_paddr + first_ph.p_memsz,
		  "e_entry 0x%llx outside the first PT_LOAD [0x%llx, 0x%llx)",
		  (unsigned long long)eh.e_entry, (unsigned long long)first_ph.p_paddr,
		  (unsigned long long)(first_ph.p_paddr + first_ph.p_memsz));
	cr_assert_leq(highest - lowest, bi->init_size,
		      "vmlinux spans 0x%llx bytes, more than init_size 0x%x",
		      (unsigned long long)(highest - lowest), bi->init_size);
	cr_log_info("vmlinux: entry 0x%llx, loads 0x%llx..0x%llx, init_size 0x%x",
		    (unsigned long long)eh.e_entry, (unsigned long long)lowest,
		    (unsigned long long)highest, bi->init_size);
}

static void bzt_check_real_kernel(int cloud, enum payload_format want)
{
	char path[512];
	size_t len;
	uint8_t *img = bzt_load_kernel(cloud, &len, path, sizeof(path));
	struct bzimage_info bi;
	struct errbuf e = {{0}};

	int r = bzimage_parse(img, len, &bi, &e);
	cr_assert_eq(r, 0, "%s: %s", path, e.msg);
	cr_assert_geq(bi.protocol, 0x206, "%s: protocol 0x%x", path, bi.protocol);
	cr_assert(bi.hdr.xloadflags & XLF_KERNEL_64);
	cr_assert_eq(bi.kernel, img + bi.setup_size);
	cr_assert_eq(bi.setup_size + bi.kernel_size, len);
	cr_assert_eq(bi.payload_format, want, "%s: payload is %s, expected %s", path,
		     payload_format_name(bi.payload_format), payload_format_name(want));
	cr_assert_eq(bi.pref_address, 0x1000000, "pref_address 0x%llx",
		     (unsigned long long)bi.pref_address);
	cr_assert(bi.hdr.relocatable_kernel);
	cr_assert_eq(bi.pref_address % bi.hdr.kernel_alignment, 0);
	cr_assert_geq(bi.hdr.cmdline_size, 255);

	double t0 = bzt_now();
	uint8_t *vm;
	size_t vm_len;
	r = payload_decompress(bi.payload, bi.payload_size, bi.payload_format, BZT_MAX_OUT, &vm,
			       &vm_len, &e);
	double dt = bzt_now() - t0;
	cr_assert_eq(r, 0, "%s: %s", path, e.msg);
	uint32_t trailer = bzt_le32(bi.payload + bi.payload_size - 4);
	cr_assert_eq(vm_len, trailer, "%s: decompressed %zu bytes, size trailer says %u", path,
		     vm_len, trailer);
	cr_log_info("%s: protocol %x.%02x, %s payload %zu bytes -> vmlinux %zu bytes in %.3f s",
		    path, bi.protocol >> 8, bi.protocol & 0xff,
		    payload_format_name(bi.payload_format), bi.payload_size, vm_len, dt);
	bzt_check_vmlinux(vm, vm_len, &bi);
	free(vm);

	/* Cut inside the compressed stream: must fail cleanly. */
	r = payload_decompress(bi.payload, bi.payload_size / 2, bi.payload_format, BZT_MAX_OUT, &vm,
			       &vm_len, &e);
	cr_assert_lt(r, 0, "%s: truncated payload decompressed", path);
	cr_log_info("%s: payload cut in half: %s", path, e.msg);
	free(img);
}

Test(bzimage_real, cloud_kernel_is_lz4_and_loads_at_pref_address, .timeout = 120)
{
	bzt_check_real_kernel(1, PAYLOAD_LZ4);
}

Test(bzimage_real, generic_kernel_is_xz_and_loads_at_pref_address, .timeout = 120)
{
	bzt_check_real_kernel(0, PAYLOAD_XZ);
}

Test(bzimage_real, truncated_real_kernel_rejected)
{
	char path[512];
	size_t len;
	uint8_t *img = bzt_load_kernel(1, &len, path, sizeof(path));
	struct bzimage_info bi;
	struct errbuf e = {{0}};

	cr_assert_lt(bzimage_parse(img, 512, &bi, &e), 0);
	cr_assert(strstr(e.msg, "shorter than the setup header"), "%s", e.msg);
	cr_assert_eq(bzimage_parse(img, len, &bi, &e), 0, "%s", e.msg);
	size_t mid = bi.setup_size + bi.hdr.payload_offset + bi.payload_size / 2;
	cr_assert_lt(bzimage_parse(img, mid, &bi, &e), 0);
	cr_assert(strstr(e.msg, "truncated"), "%s", e.msg);
	free(img);
}

/* ---- synthetic images ---- */

#define BZT_SETUP_SECTS 4
#define BZT_SETUP_SIZE	((BZT_SETUP_SECTS + 1) * 512)
#define BZT_PAYLOAD_OFF 0x100

static uint8_t *bzt_make_image(const uint8_t *payload, size_t plen, size_t *len)
{
	size_t ksize = (BZT_PAYLOAD_OFF + plen + 15) & ~(size_t)15;
	*len = BZT_SETUP_SIZE + ksize;
	uint8_t *img = calloc(1, *len);
	cr_assert(img);
	struct setup_header h;
	memset(&h, 0, sizeof(h));
	h.setup_sects = BZT_SETUP_SECTS;
	h.syssize = (uint32_t)(ksize / 16);
	h.boot_flag = 0xAA55;
	h.jump = 0x66eb;
	h.header = 0x53726448;
	h.version = 0x020f;
	h.loadflags = LOADED_HIGH | CAN_USE_HEAP;
	h.kernel_alignment = 0x200000;
	h.relocatable_kernel = 1;
	h.xloadflags = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
	h.cmdline_size = 0x7ff;
	h.payload_offset = BZT_PAYLOAD_OFF;
	h.payload_length = (uint32_t)plen;
	h.pref_address = 0x1000000;
	h.init_size = 0x100000;
	memcpy(img + 0x1f1, &h, sizeof(h));
	memcpy(img + BZT_SETUP_SIZE + BZT_PAYLOAD_OFF, payload, plen);
	return img;
}

static struct setup_header *bzt_hdr(uint8_t *img)
{
	/* The header starts at an odd offset; tests poke it through a packed struct. */
	return (struct setup_header *)(img + 0x1f1);
}

static uint8_t *bzt_default_image(size_t *len)
{
	static const uint8_t payload[] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3, 3,
					  0,	0,    0, 0, 0, 0, 0, 0, 0, 0};
	return bzt_make_image(payload, sizeof(payload), len);
}

static void bzt_expect_reject(const uint8_t *img, size_t len, int code, const char *needle)
{
	struct bzimage_info bi;
	struct errbuf e = {{0}};
	int r = bzimage_parse(img, len, &bi, &e);
	cr_assert_eq(r, code, "parse returned %d (%s), expected %d", r, e.msg, code);
	cr_assert(strstr(e.msg, needle), "message '%s' lacks '%s'", e.msg, needle);
}

Test(bzimage, synthetic_image_parses)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	struct bzimage_info bi;
	struct errbuf e = {{0}};
	cr_assert_eq(bzimage_parse(img, len, &bi, &e), 0, "%s", e.msg);
	cr_assert_eq(bi.protocol, 0x020f);
	cr_assert_eq(bi.setup_size, BZT_SETUP_SIZE);
	cr_assert_eq(bi.kernel, img + BZT_SETUP_SIZE);
	cr_assert_eq(bi.kernel_size, len - BZT_SETUP_SIZE);
	cr_assert_eq(bi.payload, img + BZT_SETUP_SIZE + BZT_PAYLOAD_OFF);
	cr_assert_eq(bi.payload_size, 21);
	cr_assert_eq(bi.payload_format, PAYLOAD_GZIP);
	cr_assert_eq(bi.pref_address, 0x1000000);
	cr_assert_eq(bi.init_size, 0x100000);
	cr_assert_eq(bi.hdr.cmdline_size, 0x7ff);
	free(img);
}

Test(bzimage, setup_sects_zero_means_four)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	bzt_hdr(img)->setup_sects = 0;
	struct bzimage_info bi;
	struct errbuf e = {{0}};
	cr_assert_eq(bzimage_parse(img, len, &bi, &e), 0, "%s", e.msg);
	cr_assert_eq(bi.setup_size, 5 * 512);
	free(img);
}

Test(bzimage, empty_and_512_byte_buffers_rejected)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	bzt_expect_reject(img, 0, -ENOEXEC, "shorter than the setup header");
	bzt_expect_reject(img, 512, -ENOEXEC, "shorter than the setup header");
	bzt_expect_reject(img, 0x1f1 + sizeof(struct setup_header) - 1, -ENOEXEC,
			  "shorter than the setup header");
	free(img);
}

Test(bzimage, cut_in_payload_rejected)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	bzt_expect_reject(img, BZT_SETUP_SIZE + BZT_PAYLOAD_OFF + 10, -EINVAL, "truncated");
	/* With syssize cleared only the payload range check is left to catch it. */
	bzt_hdr(img)->syssize = 0;
	bzt_expect_reject(img, BZT_SETUP_SIZE + BZT_PAYLOAD_OFF + 10, -EINVAL,
			  "payload is outside the kernel");
	free(img);
}

Test(bzimage, bad_boot_flag_rejected)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	img[0x1fe] = 0x55;
	img[0x1ff] = 0x55;
	bzt_expect_reject(img, len, -ENOEXEC, "boot_flag at offset 0x1fe is 0x5555");
	free(img);
}

Test(bzimage, bad_hdrs_magic_rejected)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	memcpy(img + 0x202, "HdrX", 4);
	bzt_expect_reject(img, len, -ENOEXEC, "header magic at offset 0x202");
	free(img);
}

Test(bzimage, protocol_2_04_rejected)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	bzt_hdr(img)->version = 0x0204;
	bzt_expect_reject(img, len, -ENOEXEC,
			  "boot protocol 2.04 at offset 0x206 is older than 2.06");
	free(img);
}

Test(bzimage, protocol_2_10_cannot_declare_64bit_entry)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	bzt_hdr(img)->version = 0x020a;
	bzt_expect_reject(img, len, -ENOEXEC, "predates xloadflags");
	free(img);
}

Test(bzimage, header_without_xlf_kernel_64_rejected)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	bzt_hdr(img)->xloadflags = XLF_EFI_HANDOVER_32;
	bzt_expect_reject(img, len, -ENOEXEC, "xloadflags at offset 0x236 is 0x0004");
	free(img);
}

Test(bzimage, zimage_without_loaded_high_rejected)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	bzt_hdr(img)->loadflags = 0;
	bzt_expect_reject(img, len, -ENOEXEC, "LOADED_HIGH clear");
	free(img);
}

Test(bzimage, setup_sects_past_end_rejected)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	bzt_hdr(img)->setup_sects = 255;
	bzt_expect_reject(img, len, -EINVAL, "setup_sects at offset 0x1f1 is 255");
	free(img);
}

Test(bzimage, syssize_past_end_rejected)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	bzt_hdr(img)->syssize = 0xffffffff;
	bzt_expect_reject(img, len, -EINVAL, "syssize at offset 0x1f4");
	free(img);
}

Test(bzimage, payload_offset_past_end_rejected)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	bzt_hdr(img)->payload_offset = 0x10000;
	bzt_expect_reject(img, len, -EINVAL, "payload_offset 0x10000");
	free(img);
}

Test(bzimage, payload_range_overflow_rejected)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	bzt_hdr(img)->payload_offset = 0xfffffff0;
	bzt_hdr(img)->payload_length = 0x20;
	bzt_expect_reject(img, len, -EINVAL, "payload is outside the kernel");
	bzt_hdr(img)->payload_offset = 0;
	bzt_hdr(img)->payload_length = 0;
	bzt_expect_reject(img, len, -EINVAL, "payload_length at offset 0x24c is 0");
	free(img);
}

Test(bzimage, bad_kernel_alignment_rejected)
{
	size_t len;
	uint8_t *img = bzt_default_image(&len);
	bzt_hdr(img)->kernel_alignment = 0x300000;
	bzt_expect_reject(img, len, -EINVAL, "kernel_alignment at offset 0x230 is 0x300000");
	free(img);
}

Test(bzimage, unknown_payload_still_parses)
{
	static const uint8_t junk[64] = {0xde, 0xad, 0xbe, 0xef};
	size_t len;
	uint8_t *img = bzt_make_image(junk, sizeof(junk), &len);
	struct bzimage_info bi;
	struct errbuf e = {{0}};
	cr_assert_eq(bzimage_parse(img, len, &bi, &e), 0, "%s", e.msg);
	cr_assert_eq(bi.payload_format, PAYLOAD_UNKNOWN);
	uint8_t *out;
	size_t out_len;
	cr_assert_eq(payload_decompress(bi.payload, bi.payload_size, bi.payload_format, 1 << 20,
					&out, &out_len, &e),
		     -EINVAL);
	cr_assert(strstr(e.msg, "unknown compression format (first bytes de ad be ef)"), "%s",
		  e.msg);
	free(img);
}

/* ---- payload formats ---- */

Test(decompress, detects_magics)
{
	static const struct {
		const char *bytes;
		size_t len;
		enum payload_format f;
	} cases[] = {
	    {"\x1f\x8b\x08", 3, PAYLOAD_GZIP},
	    {"\xfd\x37\x7a\x58\x5a\x00\x00", 7, PAYLOAD_XZ},
	    {"\x28\xb5\x2f\xfd", 4, PAYLOAD_ZSTD},
	    {"\x02\x21\x4c\x18", 4, PAYLOAD_LZ4},
	    {"\x5d\x00\x00\x00\x04", 5, PAYLOAD_LZMA},
	    {"BZh9", 4, PAYLOAD_BZIP2},
	    {"\x89\x4c\x5a\x4f", 4, PAYLOAD_LZO},
	    {"\x7f\x45\x4c\x46\x02", 5, PAYLOAD_NONE},
	    {"\xfd\x37\x7a\x58\x5a", 5, PAYLOAD_UNKNOWN},
	    {"BZh", 3, PAYLOAD_UNKNOWN},
	    {"\x1f", 1, PAYLOAD_UNKNOWN},
	    {"MZ\x90\x00", 4, PAYLOAD_UNKNOWN},
	    {"", 0, PAYLOAD_UNKNOWN},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_expect_eq(payload_detect((const uint8_t *)cases[i].bytes, cases[i].len),
			     cases[i].f, "case %zu", i);
	cr_expect_eq(payload_detect(NULL, 4), PAYLOAD_UNKNOWN);
}

Test(decompress, format_names)
{
	cr_expect_str_eq(payload_format_name(PAYLOAD_LZ4), "lz4");
	cr_expect_str_eq(payload_format_name(PAYLOAD_XZ), "xz");
	cr_expect_str_eq(payload_format_name(PAYLOAD_GZIP), "gzip");
	cr_expect_str_eq(payload_format_name(PAYLOAD_ZSTD), "zstd");
	cr_expect_str_eq(payload_format_name(PAYLOAD_BZIP2), "bzip2");
	cr_expect_str_eq(payload_format_name(PAYLOAD_LZMA), "lzma");
	cr_expect_str_eq(payload_format_name(PAYLOAD_LZO), "lzo");
	cr_expect_str_eq(payload_format_name(PAYLOAD_UNKNOWN), "unknown");
	cr_expect_str_eq(payload_format_name((enum payload_format)99), "unknown");
}

/* Compressible but not trivial data, like code: repeated patterns with random runs. */
static uint8_t *bzt_sample(size_t n)
{
	uint8_t *p = malloc(n);
	cr_assert(p);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (i / 4096) % 3 == 0 ? (uint8_t)x : (uint8_t)(i * 7 + (i >> 12));
	}
	return p;
}

/* The kernel build appends the uncompressed size (scripts/Makefile.lib size_append). */
static size_t bzt_append_size(uint8_t *out, size_t pos, size_t n)
{
	out[pos] = (uint8_t)n;
	out[pos + 1] = (uint8_t)(n >> 8);
	out[pos + 2] = (uint8_t)(n >> 16);
	out[pos + 3] = (uint8_t)(n >> 24);
	return pos + 4;
}

static uint8_t *bzt_gzip(const uint8_t *in, size_t n, size_t *out_len)
{
	z_stream zs;
	memset(&zs, 0, sizeof(zs));
	cr_assert_eq(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY), Z_OK);
	size_t cap = deflateBound(&zs, n);
	uint8_t *out = malloc(cap);
	zs.next_in = (Bytef *)in;
	zs.avail_in = (uInt)n;
	zs.next_out = out;
	zs.avail_out = (uInt)cap;
	cr_assert_eq(deflate(&zs, Z_FINISH), Z_STREAM_END);
	*out_len = zs.total_out; /* gzip carries its own ISIZE: the kernel appends nothing */
	deflateEnd(&zs);
	return out;
}

static uint8_t *bzt_xz(const uint8_t *in, size_t n, size_t *out_len)
{
	lzma_options_lzma opt;
	cr_assert(!lzma_lzma_preset(&opt, 6));
	/* Like scripts/xz_wrap.sh: x86 BCJ filter in front of LZMA2, CRC32 check. */
	lzma_filter filters[] = {
	    {LZMA_FILTER_X86, NULL},
	    {LZMA_FILTER_LZMA2, &opt},
	    {LZMA_VLI_UNKNOWN, NULL},
	};
	size_t cap = lzma_stream_buffer_bound(n) + 4, pos = 0;
	uint8_t *out = malloc(cap);
	cr_assert_eq(
	    lzma_stream_buffer_encode(filters, LZMA_CHECK_CRC32, NULL, in, n, out, &pos, cap - 4),
	    LZMA_OK);
	*out_len = bzt_append_size(out, pos, n);
	return out;
}

static uint8_t *bzt_xz_easy(const uint8_t *in, size_t n, size_t *out_len)
{
	size_t cap = lzma_stream_buffer_bound(n) + 4, pos = 0;
	uint8_t *out = malloc(cap);
	cr_assert_eq(lzma_easy_buffer_encode(1, LZMA_CHECK_CRC64, NULL, in, n, out, &pos, cap - 4),
		     LZMA_OK);
	*out_len = bzt_append_size(out, pos, n);
	return out;
}

static uint8_t *bzt_lzma_alone(const uint8_t *in, size_t n, size_t *out_len)
{
	lzma_options_lzma opt;
	cr_assert(!lzma_lzma_preset(&opt, 6));
	lzma_stream ls = LZMA_STREAM_INIT;
	cr_assert_eq(lzma_alone_encoder(&ls, &opt), LZMA_OK);
	size_t cap = n + n / 2 + 4096;
	uint8_t *out = malloc(cap);
	ls.next_in = in;
	ls.avail_in = n;
	ls.next_out = out;
	ls.avail_out = cap - 4;
	cr_assert_eq(lzma_code(&ls, LZMA_FINISH), LZMA_STREAM_END);
	*out_len = bzt_append_size(out, ls.total_out, n);
	lzma_end(&ls);
	return out;
}

static uint8_t *bzt_zstd(const uint8_t *in, size_t n, size_t *out_len)
{
	size_t cap = ZSTD_compressBound(n) + 4;
	uint8_t *out = malloc(cap);
	size_t r = ZSTD_compress(out, cap - 4, in, n, 3);
	cr_assert(!ZSTD_isError(r), "%s", ZSTD_getErrorName(r));
	*out_len = bzt_append_size(out, r, n);
	return out;
}

static uint8_t *bzt_lz4_legacy(const uint8_t *in, size_t n, size_t *out_len)
{
	const size_t block = 8u << 20;
	size_t nblocks = n / block + 1;
	size_t cap = 8 + nblocks * (4 + (size_t)LZ4_compressBound((int)block));
	uint8_t *out = malloc(cap);
	size_t pos = bzt_append_size(out, 0, 0x184C2102);
	for (size_t off = 0; off < n; off += block) {
		int chunk = (int)(n - off < block ? n - off : block);
		int c = LZ4_compress_default((const char *)in + off, (char *)out + pos + 4, chunk,
					     LZ4_compressBound(chunk));
		cr_assert_gt(c, 0);
		bzt_append_size(out, pos, (size_t)c);
		pos += 4 + (size_t)c;
	}
	*out_len = bzt_append_size(out, pos, n);
	return out;
}

static uint8_t *bzt_bzip2(const uint8_t *in, size_t n, size_t *out_len)
{
	unsigned int cap = (unsigned int)(n + n / 100 + 600);
	uint8_t *out = malloc(cap + 4);
	cr_assert_eq(
	    BZ2_bzBuffToBuffCompress((char *)out, &cap, (char *)in, (unsigned int)n, 9, 0, 0),
	    BZ_OK);
	*out_len = bzt_append_size(out, cap, n);
	return out;
}

typedef uint8_t *(*bzt_compress_fn)(const uint8_t *in, size_t n, size_t *out_len);

static void bzt_roundtrip(enum payload_format f, bzt_compress_fn compress, size_t n)
{
	uint8_t *src = bzt_sample(n);
	size_t clen;
	uint8_t *c = compress(src, n, &clen);
	struct errbuf e = {{0}};
	uint8_t *out;
	size_t out_len;
	const char *name = payload_format_name(f);

	cr_assert_eq(payload_detect(c, clen), f, "%s: detected %s", name,
		     payload_format_name(payload_detect(c, clen)));
	int r = payload_decompress(c, clen, f, BZT_MAX_OUT, &out, &out_len, &e);
	cr_assert_eq(r, 0, "%s: %s", name, e.msg);
	cr_assert_eq(out_len, n, "%s: %zu bytes out of %zu", name, out_len, n);
	cr_assert(memcmp(out, src, n) == 0, "%s: round trip differs", name);
	free(out);

	r = payload_decompress(c, clen, f, n, &out, &out_len, &e);
	cr_assert_eq(r, 0, "%s with max_out == size: %s", name, e.msg);
	cr_assert_eq(out_len, n);
	free(out);

	r = payload_decompress(c, clen, f, n - 1, &out, &out_len, &e);
	cr_assert_eq(r, -EFBIG, "%s with max_out too small: %d (%s)", name, r, e.msg);
	char want[64];
	snprintf(want, sizeof(want), "decompressed kernel exceeds %zu bytes", n - 1);
	cr_assert(strstr(e.msg, want), "%s: '%s'", name, e.msg);
	cr_assert_null(out);

	r = payload_decompress(c, clen, f, 1000, &out, &out_len, &e);
	cr_assert_eq(r, -EFBIG, "%s with max_out 1000: %d (%s)", name, r, e.msg);

	for (size_t cut = 1; cut < 4; cut++) {
		size_t tl = clen * cut / 4;
		r = payload_decompress(c, tl, f, BZT_MAX_OUT, &out, &out_len, &e);
		cr_assert_lt(r, 0, "%s cut to %zu of %zu bytes decompressed", name, tl, clen);
		cr_assert(e.msg[0]);
	}
	/* Cut just before the size trailer / gzip's own ISIZE: the stream itself is damaged. */
	r = payload_decompress(c, clen - 5, f, BZT_MAX_OUT, &out, &out_len, &e);
	cr_assert_lt(r, 0, "%s cut before the trailer decompressed", name);
	cr_log_info("%s: %zu -> %zu bytes round-trips", name, n, clen);
	free(c);
	free(src);
}

Test(decompress, gzip_roundtrip)
{
	bzt_roundtrip(PAYLOAD_GZIP, bzt_gzip, 1 << 20);
}

Test(decompress, xz_x86_bcj_roundtrip)
{
	bzt_roundtrip(PAYLOAD_XZ, bzt_xz, 1 << 20);
}

Test(decompress, xz_easy_roundtrip)
{
	bzt_roundtrip(PAYLOAD_XZ, bzt_xz_easy, 300000);
}

Test(decompress, lzma_alone_roundtrip)
{
	bzt_roundtrip(PAYLOAD_LZMA, bzt_lzma_alone, 1 << 20);
}

Test(decompress, zstd_roundtrip)
{
	bzt_roundtrip(PAYLOAD_ZSTD, bzt_zstd, 1 << 20);
}

Test(decompress, lz4_legacy_multiblock_roundtrip)
{
	bzt_roundtrip(PAYLOAD_LZ4, bzt_lz4_legacy, (9u << 20) + 123);
}

Test(decompress, lz4_legacy_single_block_roundtrip)
{
	bzt_roundtrip(PAYLOAD_LZ4, bzt_lz4_legacy, 5000);
}

Test(decompress, bzip2_roundtrip)
{
	bzt_roundtrip(PAYLOAD_BZIP2, bzt_bzip2, 1 << 20);
}

Test(decompress, lz4_cut_at_block_boundary_rejected)
{
	size_t n = (8u << 20) + 1000, clen;
	uint8_t *src = bzt_sample(n);
	uint8_t *c = bzt_lz4_legacy(src, n, &clen);
	size_t first = bzt_le32(c + 4);
	struct errbuf e = {{0}};
	uint8_t *out;
	size_t out_len;
	/* Magic, first block, then only the second block's 4-byte size: looks like a trailer
	 * but does not match the output. */
	int r =
	    payload_decompress(c, 4 + 4 + first + 4, PAYLOAD_LZ4, BZT_MAX_OUT, &out, &out_len, &e);
	cr_assert_eq(r, -EINVAL, "%d %s", r, e.msg);
	cr_assert(strstr(e.msg, "truncated"), "%s", e.msg);
	/* Same cut without the size field: a valid frame of one block (no trailer). */
	r = payload_decompress(c, 4 + 4 + first, PAYLOAD_LZ4, BZT_MAX_OUT, &out, &out_len, &e);
	cr_assert_eq(r, 0, "%s", e.msg);
	cr_assert_eq(out_len, 8u << 20);
	free(out);
	free(c);
	free(src);
}

Test(decompress, garbage_after_magic_rejected)
{
	static const struct {
		enum payload_format f;
		const char *magic;
		size_t mlen;
	} cases[] = {
	    {PAYLOAD_GZIP, "\x1f\x8b", 2},	   {PAYLOAD_XZ, "\xfd\x37\x7a\x58\x5a\x00", 6},
	    {PAYLOAD_ZSTD, "\x28\xb5\x2f\xfd", 4}, {PAYLOAD_LZ4, "\x02\x21\x4c\x18", 4},
	    {PAYLOAD_LZMA, "\x5d\x00\x00", 3},	   {PAYLOAD_BZIP2, "BZh9", 4},
	};
	uint8_t buf[4096];
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		/* Several junk seeds, and an LZ4 frame whose first block size is plausible so
		 * LZ4_decompress_safe itself sees the junk. */
		for (uint32_t seed = 1; seed <= 8; seed++) {
			uint32_t x = seed * 2654435761u;
			for (size_t j = 0; j < sizeof(buf); j++) {
				x ^= x << 13;
				x ^= x >> 17;
				x ^= x << 5;
				buf[j] = (uint8_t)x;
			}
			memcpy(buf, cases[i].magic, cases[i].mlen);
			if (cases[i].f == PAYLOAD_LZ4 && seed > 4)
				bzt_append_size(buf, 4, sizeof(buf) - 8);
			struct errbuf e = {{0}};
			uint8_t *out = (uint8_t *)1;
			size_t out_len = 1;
			int r = payload_decompress(buf, sizeof(buf), cases[i].f, 64u << 20, &out,
						   &out_len, &e);
			cr_expect_lt(r, 0, "%s junk seed %u decompressed to %zu bytes",
				     payload_format_name(cases[i].f), seed, out_len);
			cr_expect(e.msg[0], "%s: no message", payload_format_name(cases[i].f));
			cr_expect_null(out);
			cr_expect_eq(out_len, 0);
			if (r == 0)
				free(out);
		}
	}
}

Test(decompress, lzo_detected_but_unsupported)
{
	static const uint8_t lzo[] = {0x89, 0x4c, 0x5a, 0x4f, 0x00, 0x0d, 0x0a, 0x1a, 0x0a};
	struct errbuf e = {{0}};
	uint8_t *out;
	size_t out_len;
	cr_assert_eq(payload_detect(lzo, sizeof(lzo)), PAYLOAD_LZO);
	cr_assert_eq(payload_decompress(lzo, sizeof(lzo), PAYLOAD_LZO, 1 << 20, &out, &out_len, &e),
		     -ENOTSUP);
	cr_assert(strstr(e.msg, "lzo"), "%s", e.msg);
}

Test(decompress, uncompressed_elf_is_copied)
{
	uint8_t elf[256] = {0x7f, 'E', 'L', 'F', 2, 1, 1};
	struct errbuf e = {{0}};
	uint8_t *out;
	size_t out_len;
	cr_assert_eq(payload_detect(elf, sizeof(elf)), PAYLOAD_NONE);
	cr_assert_eq(
	    payload_decompress(elf, sizeof(elf), PAYLOAD_NONE, 1 << 20, &out, &out_len, &e), 0,
	    "%s", e.msg);
	cr_assert_eq(out_len, sizeof(elf));
	cr_assert(memcmp(out, elf, sizeof(elf)) == 0);
	free(out);
	cr_assert_eq(payload_decompress(elf, sizeof(elf), PAYLOAD_NONE, 255, &out, &out_len, &e),
		     -EFBIG);
	cr_assert(strstr(e.msg, "exceeds 255 bytes"), "%s", e.msg);
}

Test(decompress, empty_payload_rejected)
{
	struct errbuf e = {{0}};
	uint8_t *out;
	size_t out_len;
	cr_assert_eq(
	    payload_decompress((const uint8_t *)"", 0, PAYLOAD_GZIP, 1 << 20, &out, &out_len, &e),
	    -EINVAL);
	cr_assert(strstr(e.msg, "empty"), "%s", e.msg);
}

/* ---- bounded decompression ---- */

static long bzt_maxrss_mib(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss >> 10;
}

/* n zero bytes as one zstd frame whose header asks for a 2^wlog-byte window: a few KiB
 * that claim hundreds of MiB. */
static uint8_t *bzt_zstd_bomb(size_t n, int wlog, size_t *out_len)
{
	uint8_t *zeros = calloc(1, n);
	size_t cap = ZSTD_compressBound(n) + 4;
	uint8_t *out = malloc(cap);
	ZSTD_CCtx *cc = ZSTD_createCCtx();
	cr_assert(zeros && out && cc);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
	ZSTD_CCtx_setParameter(cc, ZSTD_c_windowLog, wlog);
	size_t r = ZSTD_compress2(cc, out, cap - 4, zeros, n);
	cr_assert(!ZSTD_isError(r), "%s", ZSTD_getErrorName(r));
	ZSTD_freeCCtx(cc);
	free(zeros);
	*out_len = bzt_append_size(out, r, n);
	return out;
}

Test(decompress, zstd_bomb_stops_at_the_limit_with_bounded_memory, .timeout = 60)
{
	size_t plen;
	uint8_t *p = bzt_zstd_bomb(400u << 20, 30, &plen);
	cr_assert_lt(plen, 64 << 10, "a small payload: %zu bytes", plen);
	long before = bzt_maxrss_mib();
	struct errbuf e = {{0}};
	uint8_t *out;
	size_t out_len;
	cr_assert_eq(payload_decompress(p, plen, PAYLOAD_ZSTD, 32u << 20, &out, &out_len, &e),
		     -EFBIG);
	cr_assert(strstr(e.msg, "exceeds"), "%s", e.msg);
	/* The output buffer up to the limit and nothing for the 1 GiB window. */
	cr_assert_lt(bzt_maxrss_mib() - before, 64, "RSS grew by %ld MiB",
		     bzt_maxrss_mib() - before);
	/* Allowed to finish, it costs its output and no window on top. */
	cr_assert_eq(payload_decompress(p, plen, PAYLOAD_ZSTD, BZT_MAX_OUT, &out, &out_len, &e), 0,
		     "%s", e.msg);
	cr_assert_eq(out_len, 400u << 20);
	cr_assert_lt(bzt_maxrss_mib() - before, 400 + 64, "RSS grew by %ld MiB",
		     bzt_maxrss_mib() - before);
	free(out);
	free(p);
}

/* In a VM: the guest's RAM is the limit, and "too big" is an error, not a reason to hand
 * the payload to the guest's own decompressor. */
Test(decompress, payload_larger_than_guest_ram_is_an_error_not_a_fallback, .timeout = 60)
{
	size_t plen, len;
	uint8_t *p = bzt_zstd_bomb(200u << 20, 27, &plen);
	uint8_t *img = bzt_make_image(p, plen, &len);
	const uint64_t ram = 64 << 20;
	uint8_t *hva = mmap(NULL, ram, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	cr_assert_neq(hva, MAP_FAILED);
	struct guest_mem mem = {.nregions = 0};
	cr_assert_eq(guest_mem_add_region(&mem, 0, ram, hva), 0);
	long before = bzt_maxrss_mib();
	struct x86_boot_args a = {.kernel = img,
				  .kernel_size = len,
				  .kernel_name = "bomb",
				  .cmdline = "",
				  .decompress = BOOT_DECOMPRESS_AUTO,
				  .ncpus = 1};
	struct x86_boot_setup s;
	struct errbuf e = {{0}};
	cr_assert_eq(x86_boot_load(&mem, &a, &s, &e), -EFBIG, "%s", e.msg);
	cr_assert(strstr(e.msg, "more than the 64 MiB of guest RAM") && strstr(e.msg, "--mem"),
		  "%s", e.msg);
	cr_assert_lt(bzt_maxrss_mib() - before, 64 + 32, "RSS grew by %ld MiB",
		     bzt_maxrss_mib() - before);
	munmap(hva, ram);
	free(img);
	free(p);
}
