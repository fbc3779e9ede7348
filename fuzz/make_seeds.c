/* Writes the fuzzer's seed corpus into a directory: small ELF kernels (Linux 64-bit entry,
 * PVH note, GNU ld's default layout) and synthetic bzImages whose payload is such an ELF in
 * each compression the loader reads, plus the bare payloads. Usage: make-seeds DIR */
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <asm/bootparam.h>
#include <bzlib.h>
#include <lz4.h>
#include <lzma.h>
#include <zlib.h>
#include <zstd.h>

struct buf {
	uint8_t *p;
	size_t len;
};

static void die(const char *what)
{
	fprintf(stderr, "make-seeds: %s\n", what);
	exit(1);
}

static void put(const char *dir, const char *name, const struct buf *b)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (!f || fwrite(b->p, 1, b->len, f) != b->len || fclose(f) != 0)
		die(path);
}

/* An ELF64 with one code segment at `base` (entry base + 0x10), optionally a PVH note, or
 * GNU ld's extra header and note segments. */
static struct buf make_elf(uint64_t base, int pvh, int gnu_ld)
{
	struct buf b = {calloc(1, 8192), 4096 + 64};
	Elf64_Ehdr *eh = (Elf64_Ehdr *)b.p;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = base + 0x10;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	Elf64_Phdr *ph = (Elf64_Phdr *)(b.p + sizeof(*eh));
	unsigned n = 0;
	ph[n++] = (Elf64_Phdr){.p_type = PT_LOAD,
			       .p_offset = 4096,
			       .p_vaddr = base,
			       .p_paddr = base,
			       .p_filesz = 64,
			       .p_memsz = 8192,
			       .p_flags = PF_R | PF_X};
	memset(b.p + 4096, 0x90, 64);
	if (pvh || gnu_ld) {
		uint8_t *note = b.p + 2048;
		uint32_t hdr[3] = {4, 4, pvh ? 18 : 3}; /* XEN_ELFNOTE_PHYS32_ENTRY or build-id */
		uint32_t entry = (uint32_t)base + 0x20;
		memcpy(note, hdr, 12);
		memcpy(note + 12, pvh ? "Xen" : "GNU", 4);
		memcpy(note + 16, &entry, 4);
		ph[n++] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = 2048, .p_filesz = 20};
	}
	if (gnu_ld) {
		ph[n++] = (Elf64_Phdr){.p_type = PT_LOAD,
				       .p_offset = 2048,
				       .p_vaddr = 0x08048000,
				       .p_paddr = 0x08048000,
				       .p_filesz = 20,
				       .p_memsz = 20,
				       .p_flags = PF_R};
		ph[n++] = (Elf64_Phdr){.p_type = PT_LOAD,
				       .p_vaddr = base - 0x1000,
				       .p_paddr = base - 0x1000,
				       .p_filesz = sizeof(*eh) + 4 * sizeof(Elf64_Phdr),
				       .p_memsz = sizeof(*eh) + 4 * sizeof(Elf64_Phdr),
				       .p_flags = PF_R};
	}
	eh->e_phnum = (uint16_t)n;
	return b;
}

/* A 32-bit ELF with a PVH note: the only 32-bit kernel kvmini enters. */
static struct buf make_elf32_pvh(void)
{
	struct buf b = {calloc(1, 8192), 4096 + 64};
	Elf32_Ehdr *eh = (Elf32_Ehdr *)b.p;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS32;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_386;
	eh->e_version = EV_CURRENT;
	eh->e_entry = 0x100010;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf32_Phdr);
	eh->e_phnum = 2;
	Elf32_Phdr *ph = (Elf32_Phdr *)(b.p + sizeof(*eh));
	ph[0] = (Elf32_Phdr){.p_type = PT_LOAD,
			     .p_offset = 4096,
			     .p_vaddr = 0x100000,
			     .p_paddr = 0x100000,
			     .p_filesz = 64,
			     .p_memsz = 4096,
			     .p_flags = PF_R | PF_X};
	ph[1] = (Elf32_Phdr){.p_type = PT_NOTE, .p_offset = 2048, .p_filesz = 20};
	uint32_t note[5] = {4, 4, 18, 0, 0x100020};
	memcpy(note + 3, "Xen", 4);
	memcpy(b.p + 2048, note, sizeof(note));
	memset(b.p + 4096, 0x90, 64);
	return b;
}

static size_t append_size(uint8_t *p, size_t pos, size_t n)
{
	for (int i = 0; i < 4; i++)
		p[pos + i] = (uint8_t)(n >> (8 * i));
	return pos + 4;
}

static struct buf c_gzip(const struct buf *in)
{
	struct buf o = {malloc(in->len * 2 + 256), 0};
	z_stream zs = {0};
	if (deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
		die("deflateInit2");
	zs.next_in = in->p;
	zs.avail_in = (uInt)in->len;
	zs.next_out = o.p;
	zs.avail_out = (uInt)(in->len * 2 + 252);
	if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
		die("deflate");
	o.len = append_size(o.p, zs.total_out, in->len);
	deflateEnd(&zs);
	return o;
}

static struct buf c_xz(const struct buf *in, int alone)
{
	struct buf o = {malloc(in->len * 2 + 1024), 0};
	lzma_stream ls = LZMA_STREAM_INIT;
	lzma_options_lzma opt;
	lzma_lzma_preset(&opt, 6);
	opt.dict_size = 1 << 20;
	lzma_filter f[] = {{LZMA_FILTER_LZMA2, &opt}, {LZMA_VLI_UNKNOWN, NULL}};
	if ((alone ? lzma_alone_encoder(&ls, &opt)
		   : lzma_stream_encoder(&ls, f, LZMA_CHECK_CRC32)) != LZMA_OK)
		die("lzma encoder");
	ls.next_in = in->p;
	ls.avail_in = in->len;
	ls.next_out = o.p;
	ls.avail_out = in->len * 2 + 1020;
	if (lzma_code(&ls, LZMA_FINISH) != LZMA_STREAM_END)
		die("lzma_code");
	o.len = append_size(o.p, ls.total_out, in->len);
	lzma_end(&ls);
	return o;
}

static struct buf c_zstd(const struct buf *in)
{
	size_t cap = ZSTD_compressBound(in->len) + 4;
	struct buf o = {malloc(cap), 0};
	size_t r = ZSTD_compress(o.p, cap - 4, in->p, in->len, 19);
	if (ZSTD_isError(r))
		die("zstd");
	o.len = append_size(o.p, r, in->len);
	return o;
}

static struct buf c_lz4(const struct buf *in)
{
	int cap = LZ4_compressBound((int)in->len);
	struct buf o = {malloc((size_t)cap + 12), 0};
	uint32_t magic = 0x184C2102;
	memcpy(o.p, &magic, 4);
	int n = LZ4_compress_default((const char *)in->p, (char *)o.p + 8, (int)in->len, cap);
	if (n <= 0)
		die("lz4");
	uint32_t csize = (uint32_t)n;
	memcpy(o.p + 4, &csize, 4);
	o.len = append_size(o.p, 8 + (size_t)n, in->len);
	return o;
}

static struct buf c_bzip2(const struct buf *in)
{
	unsigned cap = (unsigned)(in->len * 2 + 1024);
	struct buf o = {malloc(cap + 4), 0};
	if (BZ2_bzBuffToBuffCompress((char *)o.p, &cap, (char *)in->p, (unsigned)in->len, 9, 0,
				     0) != BZ_OK)
		die("bzip2");
	o.len = append_size(o.p, cap, in->len);
	return o;
}

/* A bzImage (protocol 2.15, 64-bit entry) around payload, as bzimage_parse wants it. */
static struct buf make_bzimage(const struct buf *payload)
{
	const size_t setup = 5 * 512, poff = 0x100;
	size_t ksize = (poff + payload->len + 15) & ~(size_t)15;
	struct buf b = {calloc(1, setup + ksize), setup + ksize};
	struct setup_header h = {0};
	h.setup_sects = 4;
	h.syssize = (uint32_t)(ksize / 16);
	h.boot_flag = 0xAA55;
	h.jump = 0x66eb;
	h.header = 0x53726448;
	h.version = 0x020f;
	h.loadflags = LOADED_HIGH;
	h.kernel_alignment = 0x200000;
	h.relocatable_kernel = 1;
	h.xloadflags = XLF_KERNEL_64;
	h.cmdline_size = 0x7ff;
	h.initrd_addr_max = 0x7fffffff;
	h.payload_offset = (uint32_t)poff;
	h.payload_length = (uint32_t)payload->len;
	h.pref_address = 0x1000000;
	h.init_size = 0x200000;
	memcpy(b.p + 0x1f1, &h, sizeof(h));
	memcpy(b.p + setup + poff, payload->p, payload->len);
	return b;
}

int main(int argc, char **argv)
{
	if (argc != 2)
		die("usage: make-seeds DIR");
	const char *dir = argv[1];
	struct buf elf = make_elf(0x100000, 0, 0), pvh = make_elf(0x100000, 1, 0),
		   gnu = make_elf(0x100000, 0, 1), vmlinux = make_elf(0x1000000, 0, 0);
	put(dir, "elf64", &elf);
	put(dir, "elf-pvh", &pvh);
	put(dir, "elf-gnu-ld", &gnu);
	struct buf elf32 = make_elf32_pvh();
	put(dir, "elf32-pvh", &elf32);
	struct {
		const char *name;
		struct buf payload;
	} p[] = {{"none", vmlinux},	      {"gzip", c_gzip(&vmlinux)}, {"xz", c_xz(&vmlinux, 0)},
		 {"lzma", c_xz(&vmlinux, 1)}, {"zstd", c_zstd(&vmlinux)}, {"lz4", c_lz4(&vmlinux)},
		 {"bzip2", c_bzip2(&vmlinux)}};
	for (size_t i = 0; i < sizeof(p) / sizeof(p[0]); i++) {
		char name[64];
		struct buf bz = make_bzimage(&p[i].payload);
		snprintf(name, sizeof(name), "bzimage-%s", p[i].name);
		put(dir, name, &bz);
		snprintf(name, sizeof(name), "payload-%s", p[i].name);
		put(dir, name, &p[i].payload);
	}
	return 0;
}
