#include "arch/x86/boot.h"

#include <elf.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/acpi.h"
#include "devices/vmgenid.h"
#include "arch/x86/bzimage.h"
#include "arch/x86/gdt.h"
#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "util/file.h"
#include "util/log.h"

#define PAGE_SIZE	  4096ull
#define HDRS_MAGIC	  0x53726448u /* "HdrS" */
#define LOADER_TYPE_OTHER 0xff
/* Linux's COMMAND_LINE_SIZE on x86, less the terminating NUL: what a kernel without a
 * setup header (a bare ELF) is assumed to accept. */
#define DEFAULT_CMDLINE_MAX 2047u
/* Protocol 2.03+ default; what a bare ELF kernel is assumed to reach. */
#define DEFAULT_INITRD_ADDR_MAX 0x7fffffffull
/* A decompressed kernel larger than this is not a kernel. */
#define MAX_DECOMPRESSED (512ull << 20)

/* Xen's PVH boot ABI (xen/include/public/arch-x86/hvm/start_info.h); no uapi header. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC		 0x336ec578u
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};
struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};
struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};
_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info layout");
_Static_assert(sizeof(struct hvm_memmap_entry) == 24, "hvm_memmap_entry layout");

#define PVH_MODLIST_ADDR (X86_PVH_INFO_ADDR + 0x40)
#define PVH_MEMMAP_ADDR	 (X86_PVH_INFO_ADDR + 0x100)
#define PVH_MEMMAP_MAX	 ((X86_ZERO_PAGE_ADDR - PVH_MEMMAP_ADDR) / sizeof(struct hvm_memmap_entry))

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

unsigned x86_build_e820(const struct guest_mem *mem, struct boot_e820_entry *out, unsigned max)
{
	unsigned n = 0;
	bool ecam_done = false;
#define E820_ADD(a, s, t)                                                                    \
	do {                                                                                 \
		if (n < max)                                                                 \
			out[n++] =                                                           \
			    (struct boot_e820_entry){.addr = (a), .size = (s), .type = (t)}; \
	} while (0)
	for (unsigned i = 0; i < mem->nregions; i++) {
		const struct guest_region *r = &mem->regions[i];
		uint64_t start = r->gpa, end = r->gpa + r->size;
		if (start < X86_EBDA_START) {
			E820_ADD(start, (end < X86_EBDA_START ? end : X86_EBDA_START) - start, 1);
			/* The ACPI and MP tables sit in the BIOS area; keep it out of the
			 * allocator's hands. */
			if (end > ACPI_TABLES_START)
				E820_ADD(ACPI_TABLES_START, X86_HIMEM_START - ACPI_TABLES_START, 2);
			start = X86_HIMEM_START;
		}
		/* The PCI ECAM window sits in the 32-bit hole, between low and high RAM. */
		if (!ecam_done && start >= X86_PCI_ECAM_BASE) {
			E820_ADD(X86_PCI_ECAM_BASE, X86_PCI_ECAM_SIZE, 2);
			ecam_done = true;
		}
		if (end > start)
			E820_ADD(start, end - start, 1);
	}
	/* Reserved, so that Linux trusts the MCFG table's window (pci_mmcfg_reserved). */
	if (!ecam_done)
		E820_ADD(X86_PCI_ECAM_BASE, X86_PCI_ECAM_SIZE, 2);
#undef E820_ADD
	return n;
}

int x86_place_initrd(const struct guest_mem *mem, uint64_t size, uint64_t min_addr,
		     uint64_t max_addr, uint64_t *addr)
{
	uint64_t top = guest_mem_end_below_4g(mem);
	if (max_addr < UINT64_MAX && max_addr + 1 < top)
		top = max_addr + 1;
	if (size == 0 || size > top)
		return -ENOSPC;
	uint64_t a = (top - size) & ~(PAGE_SIZE - 1);
	if (a < min_addr || !gpa_to_hva(mem, a, size))
		return -ENOSPC;
	*addr = a;
	return 0;
}

static void write_page_tables(const struct guest_mem *mem)
{
	uint64_t *pml4 = gpa_to_hva(mem, X86_PML4_ADDR, PAGE_SIZE);
	uint64_t *pdpt = gpa_to_hva(mem, X86_PDPT_ADDR, PAGE_SIZE);
	uint64_t *pd = gpa_to_hva(mem, X86_PD_ADDR, 4 * PAGE_SIZE);

	memset(pml4, 0, PAGE_SIZE);
	memset(pdpt, 0, PAGE_SIZE);
	pml4[0] = X86_PDPT_ADDR | 0x3; /* present, writable */
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (X86_PD_ADDR + i * PAGE_SIZE) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
}

static void write_gdt(const struct guest_mem *mem, enum x86_entry_mode mode)
{
	uint64_t *gdt = gpa_to_hva(mem, X86_GDT_ADDR, 6 * sizeof(uint64_t));
	memset(gdt, 0, 6 * sizeof(uint64_t));
	gdt[X86_GDT_CODE_SEL / 8] =
	    gdt_entry(mode == X86_ENTRY_LINUX64 ? GDT_CODE64 : GDT_CODE32, 0, 0xfffff);
	gdt[X86_GDT_DATA_SEL / 8] = gdt_entry(GDT_DATA, 0, 0xfffff);
	gdt[X86_GDT_TSS_SEL / 8] = gdt_entry(GDT_TSS, 0, 0x67);
}

/* ---- ELF ---- */

struct elf_image {
	bool is64;
	uint64_t entry;
	uint64_t pvh_entry; /* 0 if no PVH note */
	uint64_t low, high; /* physical range of the PT_LOAD segments that hold code or data */
};

/* A guest-physical range kvmini writes its own boot structures into. */
struct boot_range {
	uint64_t start, end; /* end exclusive */
	const char *what;
};
#define BOOT_RANGES_MAX 9

/* Everything x86_boot_load writes besides the kernel and initrd, at its real extent for this
 * command line and CPU count: what a kernel segment may not overlap. */
static unsigned boot_reserved_ranges(const char *cmdline, unsigned ncpus, struct boot_range *r)
{
	unsigned n = 0;
	r[n++] = (struct boot_range){X86_GDT_ADDR, X86_GDT_ADDR + 6 * 8, "the boot GDT"};
	r[n++] = (struct boot_range){X86_PVH_INFO_ADDR, X86_ZERO_PAGE_ADDR,
				     "the PVH start info and memory map"};
	r[n++] = (struct boot_range){X86_ZERO_PAGE_ADDR, X86_ZERO_PAGE_ADDR + PAGE_SIZE,
				     "the zero page (boot_params)"};
	r[n++] = (struct boot_range){X86_BOOT_STACK_TOP & ~(PAGE_SIZE - 1), X86_PML4_ADDR,
				     "the boot stack"};
	r[n++] = (struct boot_range){X86_PML4_ADDR, X86_PD_ADDR + 4 * PAGE_SIZE,
				     "the identity-map page tables"};
	r[n++] = (struct boot_range){X86_CMDLINE_ADDR,
				     X86_CMDLINE_ADDR +
					 (cmdline ? strnlen(cmdline, X86_CMDLINE_MAX) : 0) + 1,
				     "the command line"};
	r[n++] = (struct boot_range){ACPI_TABLES_START, ACPI_TABLES_START + acpi_tables_size(ncpus),
				     "the ACPI tables"};
	r[n++] =
	    (struct boot_range){MPTABLE_START, MPTABLE_START + mptable_size(ncpus), "the MP table"};
	r[n++] =
	    (struct boot_range){VMGENID_ADDR, VMGENID_ADDR + VMGENID_SIZE, "the VM generation ID"};
	return n;
}

/* Where an ELF file keeps data that is not part of the program: its own headers and its
 * notes. A PT_LOAD made only of those (GNU ld puts the ELF header in a read-only segment
 * just below -Ttext, and .note.gnu.build-id at its default base, 4 MiB or 0x08048000)
 * holds nothing the kernel runs or reads as data. */
struct elf_meta {
	uint64_t start[257], end[257];
	unsigned n;
};

static bool elf_meta_covers(const struct elf_meta *m, uint64_t off, uint64_t len)
{
	uint64_t pos = off, end = off + len;
	while (pos < end) {
		bool advanced = false;
		for (unsigned i = 0; i < m->n; i++) {
			if (m->start[i] <= pos && pos < m->end[i]) {
				pos = m->end[i];
				advanced = true;
			}
		}
		if (!advanced)
			return false;
	}
	return true;
}

/* The program headers of either class, normalised to 64-bit. */
static int elf_phdr(const uint8_t *img, size_t len, bool is64, uint64_t phoff, unsigned i,
		    Elf64_Phdr *out)
{
	size_t entsize = is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	uint64_t off;
	if (__builtin_mul_overflow((uint64_t)i, entsize, &off) ||
	    __builtin_add_overflow(off, phoff, &off) || off > len || len - off < entsize)
		return -ENOEXEC;
	if (is64) {
		memcpy(out, img + off, sizeof(*out));
	} else {
		Elf32_Phdr p;
		memcpy(&p, img + off, sizeof(p));
		*out = (Elf64_Phdr){.p_type = p.p_type,
				    .p_flags = p.p_flags,
				    .p_offset = p.p_offset,
				    .p_vaddr = p.p_vaddr,
				    .p_paddr = p.p_paddr,
				    .p_filesz = p.p_filesz,
				    .p_memsz = p.p_memsz,
				    .p_align = p.p_align};
	}
	return 0;
}

static uint64_t elf_find_pvh_entry(const uint8_t *img, size_t len, const Elf64_Phdr *ph)
{
	uint64_t off = ph->p_offset, end;
	if (__builtin_add_overflow(off, ph->p_filesz, &end) || end > len)
		return 0;
	while (end - off >= 12) {
		uint32_t namesz, descsz, type;
		memcpy(&namesz, img + off, 4);
		memcpy(&descsz, img + off + 4, 4);
		memcpy(&type, img + off + 8, 4);
		uint64_t name = off + 12;
		uint64_t desc = name + align_up(namesz, 4);
		uint64_t next = desc + align_up(descsz, 4);
		if (namesz > end || descsz > end || next > end)
			return 0;
		if (type == XEN_ELFNOTE_PHYS32_ENTRY && namesz == 4 &&
		    memcmp(img + name, "Xen", 4) == 0 && (descsz == 4 || descsz == 8)) {
			uint32_t entry;
			memcpy(&entry, img + desc, 4);
			return entry;
		}
		off = next;
	}
	return 0;
}

static int elf_load(const struct guest_mem *mem, const uint8_t *img, size_t len, const char *name,
		    const struct x86_boot_args *a, struct elf_image *out, struct errbuf *e)
{
	if (len < EI_NIDENT || memcmp(img, ELFMAG, SELFMAG) != 0)
		return errf(e, -ENOEXEC, "kernel '%s' is not an ELF file", name);
	bool is64 = img[EI_CLASS] == ELFCLASS64;
	if (!is64 && img[EI_CLASS] != ELFCLASS32)
		return errf(e, -ENOEXEC, "kernel '%s': unknown ELF class %u", name, img[EI_CLASS]);
	if (img[EI_DATA] != ELFDATA2LSB)
		return errf(e, -ENOEXEC, "kernel '%s': ELF is not little-endian", name);

	uint64_t entry, phoff, ehsize;
	unsigned phnum, machine, type;
	if (is64) {
		Elf64_Ehdr h;
		if (len < sizeof(h))
			return errf(e, -ENOEXEC, "kernel '%s': truncated ELF header", name);
		memcpy(&h, img, sizeof(h));
		entry = h.e_entry, phoff = h.e_phoff, phnum = h.e_phnum;
		machine = h.e_machine, type = h.e_type, ehsize = sizeof(h);
		if (h.e_phentsize != sizeof(Elf64_Phdr))
			return errf(e, -ENOEXEC, "kernel '%s': bad e_phentsize %u", name,
				    h.e_phentsize);
	} else {
		Elf32_Ehdr h;
		if (len < sizeof(h))
			return errf(e, -ENOEXEC, "kernel '%s': truncated ELF header", name);
		memcpy(&h, img, sizeof(h));
		entry = h.e_entry, phoff = h.e_phoff, phnum = h.e_phnum;
		machine = h.e_machine, type = h.e_type, ehsize = sizeof(h);
		if (h.e_phentsize != sizeof(Elf32_Phdr))
			return errf(e, -ENOEXEC, "kernel '%s': bad e_phentsize %u", name,
				    h.e_phentsize);
	}
	if (machine != (is64 ? EM_X86_64 : EM_386))
		return errf(e, -ENOEXEC, "kernel '%s': ELF machine %u is not x86", name, machine);
	if (type != ET_EXEC)
		return errf(e, -ENOEXEC, "kernel '%s': ELF type %u is not an executable", name,
			    type);
	if (phnum == 0 || phnum > 256)
		return errf(e, -ENOEXEC, "kernel '%s': %u program headers", name, phnum);

	/* First pass: the PVH note, and which file bytes are headers or notes. */
	*out = (struct elf_image){.is64 = is64, .entry = entry, .low = UINT64_MAX};
	struct elf_meta meta = {.n = 0};
	uint64_t phsize = (uint64_t)phnum * (is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr));
	meta.start[meta.n] = 0, meta.end[meta.n++] = ehsize;
	if (phoff <= len && phsize <= len - phoff)
		meta.start[meta.n] = phoff, meta.end[meta.n++] = phoff + phsize;
	for (unsigned i = 0; i < phnum; i++) {
		Elf64_Phdr ph;
		if (elf_phdr(img, len, is64, phoff, i, &ph) < 0)
			return errf(
			    e, -ENOEXEC,
			    "kernel '%s': truncated ELF: program header %u is outside the file",
			    name, i);
		if (ph.p_type != PT_NOTE)
			continue;
		if (!out->pvh_entry)
			out->pvh_entry = elf_find_pvh_entry(img, len, &ph);
		uint64_t note_end;
		if (meta.n < 257 && !__builtin_add_overflow(ph.p_offset, ph.p_filesz, &note_end))
			meta.start[meta.n] = ph.p_offset, meta.end[meta.n++] = note_end;
	}

	struct boot_range rsv[BOOT_RANGES_MAX];
	unsigned nrsv = boot_reserved_ranges(a->cmdline, a->ncpus, rsv);
	for (unsigned i = 0; i < phnum; i++) {
		Elf64_Phdr ph;
		elf_phdr(img, len, is64, phoff, i, &ph);
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		uint64_t file_end, mem_end;
		if (ph.p_filesz > ph.p_memsz ||
		    __builtin_add_overflow(ph.p_offset, ph.p_filesz, &file_end) || file_end > len)
			return errf(
			    e, -ENOEXEC,
			    "kernel '%s': segment %u (offset 0x%llx, %llu bytes) is outside "
			    "the file",
			    name, i, (unsigned long long)ph.p_offset,
			    (unsigned long long)ph.p_filesz);
		bool inert = !(ph.p_flags & (PF_X | PF_W)) && ph.p_filesz == ph.p_memsz &&
			     elf_meta_covers(&meta, ph.p_offset, ph.p_filesz);
		const struct boot_range *hit = NULL;
		bool wraps = __builtin_add_overflow(ph.p_paddr, ph.p_memsz, &mem_end);
		for (unsigned r = 0; r < nrsv && !wraps && !hit; r++)
			if (ph.p_paddr < rsv[r].end && rsv[r].start < mem_end)
				hit = &rsv[r];
		uint8_t *dst = wraps ? NULL : gpa_to_hva(mem, ph.p_paddr, ph.p_memsz);
		if (inert && (hit || !dst)) {
			/* QEMU loads such a segment if it can and nobody misses it if not. */
			log_info("kernel '%s': segment %u at 0x%llx holds only ELF headers or "
				 "notes; not loaded (%s)",
				 name, i, (unsigned long long)ph.p_paddr,
				 hit ? hit->what : "outside guest RAM");
			continue;
		}
		if (hit)
			return errf(e, -EINVAL,
				    "kernel '%s': segment %u [0x%llx-0x%llx) overlaps %s "
				    "[0x%llx-0x%llx) that kvmini writes there",
				    name, i, (unsigned long long)ph.p_paddr,
				    (unsigned long long)mem_end, hit->what,
				    (unsigned long long)hit->start, (unsigned long long)hit->end);
		/* -ENOSPC means "guest RAM too small", which no fallback can fix. */
		if (!dst)
			return errf(
			    e, -ENOSPC,
			    "kernel '%s': segment %u at 0x%llx (%llu bytes) does not fit in "
			    "guest RAM; try a larger --mem",
			    name, i, (unsigned long long)ph.p_paddr,
			    (unsigned long long)ph.p_memsz);
		memcpy(dst, img + ph.p_offset, ph.p_filesz);
		memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
		if (inert)
			continue;
		if (ph.p_paddr < out->low)
			out->low = ph.p_paddr;
		if (mem_end > out->high)
			out->high = mem_end;
	}
	if (out->low == UINT64_MAX)
		return errf(e, -ENOEXEC, "kernel '%s': ELF has no loadable segment", name);
	return 0;
}

/* The entry point must be code kvmini loaded, and reachable: 64-bit kernels start with
 * paging on and only the first 4 GiB identity-mapped; PVH starts with paging off. */
static int check_entry(const struct guest_mem *mem, const struct elf_image *elf, uint64_t entry,
		       enum x86_entry_mode mode, const char *name, struct errbuf *e)
{
	uint64_t limit = mode == X86_ENTRY_LINUX64 ? X86_IDENTITY_MAP_END : 1ull << 32;
	if (entry >= limit)
		return errf(e, -ENOEXEC,
			    "kernel '%s': entry point 0x%llx is above 4 GiB, outside the identity "
			    "map kvmini enters the kernel with",
			    name, (unsigned long long)entry);
	if (!gpa_to_hva(mem, entry, 1) || entry < elf->low || entry >= elf->high)
		return errf(e, -ENOEXEC,
			    "kernel '%s': entry point 0x%llx is not inside its loaded segments",
			    name, (unsigned long long)entry);
	return 0;
}

/* ---- boot_params / hvm_start_info ---- */

static void fill_default_header(struct setup_header *h)
{
	memset(h, 0, sizeof(*h));
	h->boot_flag = 0xaa55;
	h->header = HDRS_MAGIC;
	h->version = 0x020f;
	h->kernel_alignment = 0x200000;
	h->cmdline_size = DEFAULT_CMDLINE_MAX;
	h->initrd_addr_max = (uint32_t)DEFAULT_INITRD_ADDR_MAX;
}

static int write_cmdline(const struct guest_mem *mem, const char *cmdline, uint32_t max,
			 struct errbuf *e)
{
	size_t n = strlen(cmdline);
	if (n > max)
		return errf(e, -E2BIG,
			    "kernel command line is %zu bytes; this kernel accepts at most %u", n,
			    max);
	if (n + 1 > X86_CMDLINE_MAX)
		return errf(e, -E2BIG, "kernel command line is %zu bytes; kvmini allows %llu", n,
			    X86_CMDLINE_MAX - 1);
	return guest_mem_write(mem, X86_CMDLINE_ADDR, cmdline, n + 1);
}

static int write_zero_page(const struct guest_mem *mem, const struct setup_header *hdr,
			   const struct x86_boot_setup *s)
{
	struct boot_params *bp = gpa_to_hva(mem, X86_ZERO_PAGE_ADDR, sizeof(*bp));
	if (!bp)
		return -EFAULT;
	memset(bp, 0, sizeof(*bp));
	/* boot.rst: copy the image's setup header, then write every field the boot loader
	 * owns. A value left over from the image would be believed: a non-zero setup_data is
	 * a list the kernel walks at boot. */
	bp->hdr = *hdr;
	bp->hdr.vid_mode = 0xffff; /* "normal": no video mode change asked */
	bp->hdr.type_of_loader = LOADER_TYPE_OTHER;
	bp->hdr.ext_loader_ver = 0;
	bp->hdr.ext_loader_type = 0;
	/* LOADED_HIGH is the image's and true here; QUIET, KEEP_SEGMENTS and CAN_USE_HEAP
	 * are ours and off (the real-mode setup code, whose heap that is, never runs). */
	bp->hdr.loadflags = LOADED_HIGH;
	bp->hdr.setup_move_size = 0;
	bp->hdr.code32_start = (uint32_t)X86_BZIMAGE_LOAD;
	bp->hdr.heap_end_ptr = 0;
	bp->hdr.setup_data = 0;
	bp->hdr.hardware_subarch = 0; /* a PC */
	bp->hdr.hardware_subarch_data = 0;
	bp->hdr.cmd_line_ptr = (uint32_t)X86_CMDLINE_ADDR;
	bp->hdr.ramdisk_image = (uint32_t)s->initrd_addr;
	bp->hdr.ramdisk_size = (uint32_t)s->initrd_size;
	bp->ext_ramdisk_image = (uint32_t)(s->initrd_addr >> 32);
	bp->ext_ramdisk_size = (uint32_t)(s->initrd_size >> 32);
	bp->acpi_rsdp_addr = ACPI_RSDP_ADDR;
	bp->e820_entries = (uint8_t)x86_build_e820(mem, bp->e820_table, E820_MAX_ENTRIES_ZEROPAGE);
	return 0;
}

static int write_pvh_start_info(const struct guest_mem *mem, const struct x86_boot_setup *s)
{
	struct boot_e820_entry e820[PVH_MEMMAP_MAX];
	unsigned n = x86_build_e820(mem, e820, PVH_MEMMAP_MAX);
	struct hvm_start_info si = {
	    .magic = HVM_START_MAGIC,
	    .version = 1,
	    .nr_modules = s->initrd_size ? 1 : 0,
	    .modlist_paddr = s->initrd_size ? PVH_MODLIST_ADDR : 0,
	    .cmdline_paddr = X86_CMDLINE_ADDR,
	    .rsdp_paddr = ACPI_RSDP_ADDR,
	    .memmap_paddr = PVH_MEMMAP_ADDR,
	    .memmap_entries = n,
	};
	struct hvm_modlist_entry mod = {.paddr = s->initrd_addr, .size = s->initrd_size};
	for (unsigned i = 0; i < n; i++) {
		struct hvm_memmap_entry m = {e820[i].addr, e820[i].size, e820[i].type, 0};
		int ret = guest_mem_write(mem, PVH_MEMMAP_ADDR + i * sizeof(m), &m, sizeof(m));
		if (ret < 0)
			return ret;
	}
	int ret = guest_mem_write(mem, PVH_MODLIST_ADDR, &mod, sizeof(mod));
	if (ret == 0)
		ret = guest_mem_write(mem, X86_PVH_INFO_ADDR, &si, sizeof(si));
	return ret;
}

/* ---- the three kernel kinds ---- */

static int load_elf_kernel(const struct guest_mem *mem, const struct x86_boot_args *a,
			   struct x86_boot_setup *s, struct errbuf *e)
{
	struct elf_image elf;
	const char *name = a->kernel_name;
	int ret = elf_load(mem, a->kernel, a->kernel_size, name, a, &elf, e);
	if (ret < 0)
		return ret;
	s->kernel_start = elf.low;
	s->kernel_end = elf.high;
	if (elf.pvh_entry) {
		s->mode = X86_ENTRY_PVH32;
		s->entry = elf.pvh_entry;
	} else if (elf.is64) {
		s->mode = X86_ENTRY_LINUX64;
		s->entry = elf.entry;
	} else {
		return errf(e, -ENOEXEC,
			    "kernel '%s' is a 32-bit ELF without a PVH entry note "
			    "(XEN_ELFNOTE_PHYS32_ENTRY); kvmini cannot enter it",
			    name);
	}
	return check_entry(mem, &elf, s->entry, s->mode, name, e);
}

/* Host-side decompression: boot the vmlinux inside the bzImage directly, keeping the
 * image's own setup header for the zero page. */
static int load_bzimage_host(const struct guest_mem *mem, const struct bzimage_info *bz,
			     const struct x86_boot_args *a, struct x86_boot_setup *s,
			     struct errbuf *e)
{
	const char *name = a->kernel_name;
	uint8_t *vmlinux = NULL;
	size_t vmlinux_len = 0;
	/* A vmlinux larger than guest RAM cannot be loaded, so the decompressor's output (and
	 * with it kvmini's memory) stops there. */
	size_t max_out = MAX_DECOMPRESSED;
	if (mem->ram_size < max_out)
		max_out = (size_t)mem->ram_size;
	struct errbuf dc_err;
	int ret = payload_decompress(bz->payload, bz->payload_size, bz->payload_format, max_out,
				     &vmlinux, &vmlinux_len, &dc_err);
	if (ret == -EFBIG)
		return errf(e, ret,
			    "kernel '%s': its %s payload decompresses to more than the %zu MiB of "
			    "guest RAM; try a larger --mem",
			    name, payload_format_name(bz->payload_format), max_out >> 20);
	if (ret < 0)
		return errf(e, ret, "kernel '%s': %s", name, dc_err.msg);
	struct elf_image elf;
	ret = elf_load(mem, vmlinux, vmlinux_len, name, a, &elf, e);
	free(vmlinux);
	if (ret < 0)
		return ret;
	if (!elf.is64)
		return errf(e, -ENOEXEC, "kernel '%s': decompressed payload is not a 64-bit ELF",
			    name);
	s->mode = X86_ENTRY_LINUX64;
	s->entry = elf.entry;
	if ((ret = check_entry(mem, &elf, s->entry, s->mode, name, e)) < 0)
		return ret;
	s->kernel_start = elf.low;
	/* The kernel uses memory past its image (early page tables, brk) up to init_size. */
	s->kernel_end = elf.high;
	if (bz->init_size && elf.low + bz->init_size > s->kernel_end)
		s->kernel_end = elf.low + bz->init_size;
	snprintf(s->description, sizeof(s->description),
		 "bzImage (protocol %u.%02u), %s payload decompressed on the host to a %zu KiB "
		 "vmlinux",
		 bz->protocol >> 8, bz->protocol & 0xff, payload_format_name(bz->payload_format),
		 vmlinux_len >> 10);
	return 0;
}

static int load_bzimage_guest(const struct guest_mem *mem, const struct bzimage_info *bz,
			      const char *name, struct x86_boot_setup *s, struct errbuf *e)
{
	uint64_t need = bz->pref_address + bz->init_size;
	if (X86_BZIMAGE_LOAD + bz->kernel_size > need)
		need = X86_BZIMAGE_LOAD + bz->kernel_size;
	if (need > guest_mem_end_below_4g(mem))
		return errf(e, -ENOSPC,
			    "kernel '%s' needs %llu MiB of guest memory to decompress itself; "
			    "try a larger --mem",
			    name, (unsigned long long)((need + (1 << 20) - 1) >> 20));
	int ret = guest_mem_write(mem, X86_BZIMAGE_LOAD, bz->kernel, bz->kernel_size);
	if (ret < 0)
		return errf(e, ret, "kernel '%s' does not fit in guest memory", name);
	s->mode = X86_ENTRY_LINUX64;
	s->entry = X86_BZIMAGE_LOAD + 0x200; /* the 64-bit entry point, boot.rst */
	s->kernel_start = X86_BZIMAGE_LOAD;
	s->kernel_end = need;
	snprintf(s->description, sizeof(s->description),
		 "bzImage (protocol %u.%02u), %s payload decompressed by the guest",
		 bz->protocol >> 8, bz->protocol & 0xff, payload_format_name(bz->payload_format));
	return 0;
}

int x86_boot_load(const struct guest_mem *mem, const struct x86_boot_args *a,
		  struct x86_boot_setup *s, struct errbuf *e)
{
	struct setup_header hdr;
	struct bzimage_info bz;
	int ret;

	memset(s, 0, sizeof(*s));
	fill_default_header(&hdr);
	if (guest_mem_end_below_4g(mem) < 2 * X86_HIMEM_START)
		return errf(e, -ENOSPC, "guest memory is too small to boot anything");

	if (a->kernel_size >= SELFMAG && memcmp(a->kernel, ELFMAG, SELFMAG) == 0) {
		ret = load_elf_kernel(mem, a, s, e);
		if (ret < 0)
			return ret;
		snprintf(s->description, sizeof(s->description), "ELF kernel, %s entry at 0x%llx",
			 s->mode == X86_ENTRY_PVH32 ? "PVH 32-bit" : "64-bit",
			 (unsigned long long)s->entry);
	} else {
		struct errbuf bz_err;
		ret = bzimage_parse(a->kernel, a->kernel_size, &bz, &bz_err);
		if (ret < 0) {
			/* Only claim "not a kernel" when it does not look like a bzImage at
			 * all; a broken bzImage gets the parser's precise reason. */
			bool looks_bz =
			    a->kernel_size >= 0x206 && memcmp(a->kernel + 0x202, "HdrS", 4) == 0;
			if (looks_bz)
				return errf(e, ret, "kernel '%s': %s", a->kernel_name, bz_err.msg);
			return errf(e, -ENOEXEC,
				    "kernel '%s' is neither a Linux bzImage nor an ELF file (%s)",
				    a->kernel_name, bz_err.msg);
		}
		hdr = bz.hdr;
		bool host_ok = bz.payload && bz.payload_format != PAYLOAD_UNKNOWN &&
			       bz.payload_format != PAYLOAD_LZO;
		if (a->decompress == BOOT_DECOMPRESS_HOST && !host_ok)
			return errf(
			    e, -ENOTSUP,
			    "kernel '%s': --boot-decompress=host cannot unpack a %s payload",
			    a->kernel_name, payload_format_name(bz.payload_format));
		ret = -ENOTSUP;
		if (a->decompress == BOOT_DECOMPRESS_AUTO && !host_ok)
			log_warn("kernel '%s': kvmini cannot unpack a %s payload; the guest's own "
				 "decompressor will",
				 a->kernel_name, payload_format_name(bz.payload_format));
		if (a->decompress != BOOT_DECOMPRESS_GUEST && host_ok) {
			struct errbuf host_err;
			ret = load_bzimage_host(mem, &bz, a, s, &host_err);
			/* Falling back helps only when kvmini lacks the library or cannot use
			 * the vmlinux it found; a payload that is corrupt, or too big for the
			 * guest's RAM, is no better in the guest's own decompressor. */
			bool fallback = ret == -ENOENT || ret == -ENOEXEC || ret == -ENOTSUP;
			if (ret < 0 && (a->decompress == BOOT_DECOMPRESS_HOST || !fallback))
				return errf(e, ret, "%s", host_err.msg);
			if (ret < 0)
				log_warn("%s; falling back to the guest's own decompressor",
					 host_err.msg);
		}
		if (ret < 0) {
			ret = load_bzimage_guest(mem, &bz, a->kernel_name, s, e);
			if (ret < 0)
				return ret;
		}
		if (bz.protocol < 0x0206)
			hdr.cmdline_size = 255;
	}

	ret = write_cmdline(mem, a->cmdline ? a->cmdline : "", hdr.cmdline_size, e);
	if (ret < 0)
		return ret == -EFAULT ? errf(e, ret, "cannot write the command line") : ret;

	if (a->initrd_size) {
		uint64_t max = hdr.initrd_addr_max ? hdr.initrd_addr_max : DEFAULT_INITRD_ADDR_MAX;
		ret = x86_place_initrd(mem, a->initrd_size, align_up(s->kernel_end, PAGE_SIZE), max,
				       &s->initrd_addr);
		if (ret < 0)
			return errf(e, ret,
				    "initrd of %llu bytes does not fit in guest memory between the "
				    "kernel's end (0x%llx) and 0x%llx; try a larger --mem",
				    (unsigned long long)a->initrd_size,
				    (unsigned long long)s->kernel_end, (unsigned long long)max);
		/* Placed and checked: read it straight to its final address, no copy. */
		uint8_t *dst = gpa_to_hva(mem, s->initrd_addr, a->initrd_size);
		if (!a->initrd) {
			ret = file_pread_all(a->initrd_fd, 0, dst, a->initrd_size);
			if (ret < 0)
				return errf(e, ret, "cannot read the initrd: %s",
					    ret == -EIO ? "the file shrank since it was opened"
							: strerror(-ret));
		} else {
			memcpy(dst, a->initrd, a->initrd_size);
		}
		s->initrd_size = a->initrd_size;
	}

	if (s->mode == X86_ENTRY_PVH32) {
		s->start_info = X86_PVH_INFO_ADDR;
		ret = write_pvh_start_info(mem, s);
	} else {
		s->boot_params = X86_ZERO_PAGE_ADDR;
		ret = write_zero_page(mem, &hdr, s);
	}
	if (ret == 0)
		ret = mptable_write(mem, a->ncpus);
	if (ret == 0)
		ret = acpi_write_tables(mem, a->ncpus);
	if (ret < 0)
		return errf(e, ret, "cannot write the boot tables into guest memory");
	write_page_tables(mem);
	write_gdt(mem, s->mode);
	return 0;
}
