/* The x86 boot loader on fake guest memory, without /dev/kvm: the zero page and e820 a
 * kernel receives, initrd placement, the ELF and PVH paths, and per-vCPU CPUID. The bzImage
 * cases use Debian's real cloud kernel (scripts/fetch-kernels.sh). */
#include <criterion/criterion.h>
#include <elf.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpu.h"
#include "arch/x86/layout.h"
#include "arch/x86/mptable.h"
#include "kernels.h"
#include "util/file.h"

static struct guest_mem bt_mem;
static uint8_t *bt_ram;
static size_t bt_ram_size;

/* RAM laid out as kvmini lays it out: [0, min(size, 3G)) and the rest from 4 GiB. */
static void bt_make_memory(uint64_t size)
{
	memset(&bt_mem, 0, sizeof(bt_mem));
	bt_ram = mmap(NULL, size, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	cr_assert_neq(bt_ram, MAP_FAILED);
	bt_ram_size = size;
	uint64_t low = size < X86_MMIO_HOLE_START ? size : X86_MMIO_HOLE_START;
	cr_assert_eq(guest_mem_add_region(&bt_mem, 0, low, bt_ram), 0);
	if (size > low)
		cr_assert_eq(
		    guest_mem_add_region(&bt_mem, X86_MMIO_HOLE_END, size - low, bt_ram + low), 0);
}

static void bt_free_memory(void)
{
	if (bt_ram)
		munmap(bt_ram, bt_ram_size);
	bt_ram = NULL;
}

TestSuite(boot, .fini = bt_free_memory);

static uint8_t *bt_read_kernel(size_t *len)
{
	char *path = test_kernel_path("cloud-amd64");
	cr_assert_not_null(path,
			   "no Debian cloud kernel in kernels/: run scripts/fetch-kernels.sh");
	uint8_t *img;
	struct errbuf e;
	cr_assert_eq(read_whole_file(path, "kernel", &img, len, &e), 0, "%s", e.msg);
	free(path);
	return img;
}

static const struct boot_params *bt_zero_page(void)
{
	return gpa_to_hva(&bt_mem, X86_ZERO_PAGE_ADDR, sizeof(struct boot_params));
}

Test(boot, e820_for_small_memory)
{
	bt_make_memory(64 << 20);
	struct boot_e820_entry e[8];
	unsigned n = x86_build_e820(&bt_mem, e, 8);
	cr_assert_eq(n, 4);
	cr_assert(e[0].addr == 0 && e[0].size == 0xa0000 && e[0].type == 1);
	cr_assert(e[1].addr == ACPI_TABLES_START && e[1].addr + e[1].size == 0x100000 &&
		  e[1].type == 2);
	cr_assert(e[2].addr == 0x100000 && e[2].addr + e[2].size == 64 << 20 && e[2].type == 1);
	cr_assert(e[3].addr == X86_PCI_ECAM_BASE && e[3].size == X86_PCI_ECAM_SIZE &&
		      e[3].type == 2,
		  "the PCI ECAM window is reserved (Linux uses MCFG only then)");
}

Test(boot, e820_splits_around_the_32bit_hole)
{
	bt_make_memory(5ull << 30);
	struct boot_e820_entry e[8];
	unsigned n = x86_build_e820(&bt_mem, e, 8);
	cr_assert_eq(n, 5);
	cr_assert_eq(e[2].addr + e[2].size, X86_MMIO_HOLE_START, "RAM below the hole ends at 3G");
	cr_assert(e[3].addr == X86_PCI_ECAM_BASE && e[3].type == 2,
		  "ECAM between low and high RAM");
	cr_assert_eq(e[4].addr, 1ull << 32);
	cr_assert_eq(e[4].size, 2ull << 30, "the 2 GiB above 3 GiB move above 4 GiB");
	uint64_t ram = 0;
	for (unsigned i = 0; i < n; i++)
		if (e[i].type == 1)
			ram += e[i].size;
	cr_assert_eq(ram, (5ull << 30) - (0x100000 - 0xa0000), "only the BIOS area is missing");
}

Test(boot, initrd_goes_high_page_aligned_and_below_the_limit)
{
	bt_make_memory(256 << 20);
	uint64_t a;
	cr_assert_eq(x86_place_initrd(&bt_mem, 12345, 0x2000000, 0x7fffffff, &a), 0);
	cr_assert_eq(a % 4096, 0);
	cr_assert_leq(a + 12345, 256 << 20);
	cr_assert_gt(a + 12345 + 4096, 256 << 20, "as high as possible");
	/* initrd_addr_max below the end of RAM wins. */
	cr_assert_eq(x86_place_initrd(&bt_mem, 4096, 0x2000000, 0x8000000 - 1, &a), 0);
	cr_assert_eq(a, 0x8000000 - 4096);
	/* It may not go below the kernel's end. */
	cr_assert_eq(x86_place_initrd(&bt_mem, 200 << 20, 0x6000000, 0x7fffffff, &a), -ENOSPC);
	cr_assert_eq(x86_place_initrd(&bt_mem, 0, 0, 0x7fffffff, &a), -ENOSPC);
}

Test(boot, initrd_stays_below_4g_with_large_memory)
{
	bt_make_memory(6ull << 30);
	uint64_t a;
	cr_assert_eq(x86_place_initrd(&bt_mem, 1 << 20, 0x2000000, UINT64_MAX, &a), 0);
	cr_assert_eq(a, X86_MMIO_HOLE_START - (1 << 20));
}

Test(boot, bzimage_host_decompressed_zero_page)
{
	size_t len;
	uint8_t *img = bt_read_kernel(&len);
	bt_make_memory(512 << 20);
	static const uint8_t initrd[] = "fake initrd contents";
	const char *cmdline = "console=ttyS0 root=/dev/vda";
	struct x86_boot_args a = {.kernel = img,
				  .kernel_size = len,
				  .kernel_name = "cloud",
				  .initrd = initrd,
				  .initrd_size = sizeof(initrd),
				  .cmdline = cmdline,
				  .decompress = BOOT_DECOMPRESS_AUTO,
				  .ncpus = 2};
	struct x86_boot_setup s;
	struct errbuf e;
	cr_assert_eq(x86_boot_load(&bt_mem, &a, &s, &e), 0, "%s", e.msg);
	cr_assert_eq(s.mode, X86_ENTRY_LINUX64);
	cr_assert_eq(s.entry, 0x1000000, "startup_64 of the unpacked vmlinux");
	cr_assert(strstr(s.description, "decompressed on the host"), "%s", s.description);

	const struct boot_params *bp = bt_zero_page();
	struct setup_header orig;
	memcpy(&orig, img + 0x1f1, sizeof(orig));
	cr_assert_eq(bp->hdr.header, 0x53726448);
	cr_assert_eq(bp->hdr.version, orig.version, "the image's own setup header is passed on");
	cr_assert_eq(bp->hdr.boot_flag, 0xaa55);
	cr_assert_eq(bp->hdr.type_of_loader, 0xff);
	cr_assert(bp->hdr.loadflags & LOADED_HIGH);
	cr_assert_eq(bp->hdr.cmd_line_ptr, X86_CMDLINE_ADDR);
	cr_assert_str_eq((const char *)gpa_to_hva(&bt_mem, bp->hdr.cmd_line_ptr, 1), cmdline);
	uint64_t rd = bp->hdr.ramdisk_image | ((uint64_t)bp->ext_ramdisk_image << 32);
	cr_assert_eq(rd, s.initrd_addr);
	cr_assert_eq(bp->hdr.ramdisk_size, sizeof(initrd));
	cr_assert_eq(rd % 4096, 0);
	cr_assert_geq(rd, s.kernel_end, "the initrd does not overlap the kernel");
	cr_assert_leq(rd + sizeof(initrd) - 1, orig.initrd_addr_max);
	cr_assert_eq(memcmp(gpa_to_hva(&bt_mem, rd, sizeof(initrd)), initrd, sizeof(initrd)), 0);
	cr_assert_eq(bp->acpi_rsdp_addr, ACPI_RSDP_ADDR);
	cr_assert_eq(bp->e820_entries, 4);
	cr_assert_eq(bp->e820_table[2].addr + bp->e820_table[2].size, 512 << 20);
	/* The vmlinux sits at its link address with its ELF header gone: the first bytes of
	 * startup_64 are code, and the page tables identity-map it. */
	const uint64_t *pd = gpa_to_hva(&bt_mem, X86_PD_ADDR, 4096);
	cr_assert_eq(pd[0x1000000 >> 21], 0x1000000 | 0x83);
	free(img);
}

Test(boot, bzimage_guest_decompressor_entry)
{
	size_t len;
	uint8_t *img = bt_read_kernel(&len);
	bt_make_memory(512 << 20);
	struct x86_boot_args a = {.kernel = img,
				  .kernel_size = len,
				  .kernel_name = "cloud",
				  .cmdline = "",
				  .decompress = BOOT_DECOMPRESS_GUEST,
				  .ncpus = 1};
	struct x86_boot_setup s;
	struct errbuf e;
	cr_assert_eq(x86_boot_load(&bt_mem, &a, &s, &e), 0, "%s", e.msg);
	cr_assert_eq(s.entry, 0x100200, "64-bit entry: protected-mode kernel + 0x200");
	size_t setup = ((size_t)(img[0x1f1] ? img[0x1f1] : 4) + 1) * 512;
	cr_assert_eq(memcmp(gpa_to_hva(&bt_mem, 0x100000, 4096), img + setup, 4096), 0);
	cr_assert_eq(bt_zero_page()->hdr.ramdisk_size, 0);
	free(img);
}

Test(boot, command_line_longer_than_the_kernel_accepts)
{
	size_t len;
	uint8_t *img = bt_read_kernel(&len);
	bt_make_memory(256 << 20);
	char *cmd = malloc(4000);
	memset(cmd, 'x', 3999);
	cmd[3999] = '\0';
	struct x86_boot_args a = {.kernel = img,
				  .kernel_size = len,
				  .kernel_name = "cloud",
				  .cmdline = cmd,
				  .decompress = BOOT_DECOMPRESS_GUEST,
				  .ncpus = 1};
	struct x86_boot_setup s;
	struct errbuf e;
	cr_assert_eq(x86_boot_load(&bt_mem, &a, &s, &e), -E2BIG);
	cr_assert(strstr(e.msg, "2047"), "names the kernel's limit: %s", e.msg);
	free(cmd);
	free(img);
}

/* A minimal ELF: one PT_LOAD of code at 1 MiB, and optionally a PVH note. 32- or 64-bit. */
struct bt_elf {
	uint8_t bytes[8192];
	size_t len;
};

static void bt_build_elf64(struct bt_elf *out, bool pvh_note)
{
	memset(out, 0, sizeof(*out));
	Elf64_Ehdr *eh = (Elf64_Ehdr *)out->bytes;
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = 0x100010;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(Elf64_Phdr);
	eh->e_phnum = pvh_note ? 2 : 1;
	Elf64_Phdr *ph = (Elf64_Phdr *)(out->bytes + sizeof(*eh));
	ph[0] = (Elf64_Phdr){.p_type = PT_LOAD,
			     .p_offset = 4096,
			     .p_vaddr = 0x100000,
			     .p_paddr = 0x100000,
			     .p_filesz = 64,
			     .p_memsz = 8192,
			     .p_flags = PF_R | PF_X};
	memset(out->bytes + 4096, 0x90, 64);
	if (pvh_note) {
		uint8_t *n = out->bytes + 2048;
		uint32_t hdr[3] = {4, 4, 18}; /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
		uint32_t entry = 0x100020;
		memcpy(n, hdr, 12);
		memcpy(n + 12, "Xen", 4);
		memcpy(n + 16, &entry, 4);
		ph[1] = (Elf64_Phdr){.p_type = PT_NOTE, .p_offset = 2048, .p_filesz = 20};
	}
	out->len = 4096 + 64;
}

Test(boot, elf64_gets_the_linux_64bit_entry)
{
	struct bt_elf elf;
	bt_build_elf64(&elf, false);
	bt_make_memory(64 << 20);
	memset(bt_ram + 0x100000 + 64, 0xee, 128); /* stale bytes where .bss goes */
	struct x86_boot_args a = {.kernel = elf.bytes,
				  .kernel_size = elf.len,
				  .kernel_name = "t",
				  .cmdline = "a b c",
				  .ncpus = 4};
	struct x86_boot_setup s;
	struct errbuf e;
	cr_assert_eq(x86_boot_load(&bt_mem, &a, &s, &e), 0, "%s", e.msg);
	cr_assert_eq(s.mode, X86_ENTRY_LINUX64);
	cr_assert_eq(s.entry, 0x100010);
	cr_assert_eq(s.boot_params, X86_ZERO_PAGE_ADDR);
	cr_assert_eq(bt_ram[0x100000], 0x90);
	cr_assert_eq(bt_ram[0x100000 + 64], 0, "p_memsz beyond p_filesz is zeroed");
	cr_assert_eq(bt_zero_page()->hdr.cmdline_size, 2047);
}

Test(boot, pvh_note_selects_the_pvh_entry_and_start_info)
{
	struct bt_elf elf;
	bt_build_elf64(&elf, true);
	bt_make_memory(64 << 20);
	static const uint8_t initrd[5000] = {1, 2, 3};
	struct x86_boot_args a = {.kernel = elf.bytes,
				  .kernel_size = elf.len,
				  .kernel_name = "t",
				  .cmdline = "pvh cmdline",
				  .initrd = initrd,
				  .initrd_size = sizeof(initrd),
				  .ncpus = 1};
	struct x86_boot_setup s;
	struct errbuf e;
	cr_assert_eq(x86_boot_load(&bt_mem, &a, &s, &e), 0, "%s", e.msg);
	cr_assert_eq(s.mode, X86_ENTRY_PVH32);
	cr_assert_eq(s.entry, 0x100020);
	/* struct hvm_start_info, Xen's public ABI, read at its documented offsets. */
	const uint8_t *si = gpa_to_hva(&bt_mem, s.start_info, 56);
	uint32_t magic, version, nr_modules, memmap_entries;
	uint64_t modlist, cmdline, rsdp, memmap;
	memcpy(&magic, si, 4);
	memcpy(&version, si + 4, 4);
	memcpy(&nr_modules, si + 12, 4);
	memcpy(&modlist, si + 16, 8);
	memcpy(&cmdline, si + 24, 8);
	memcpy(&rsdp, si + 32, 8);
	memcpy(&memmap, si + 40, 8);
	memcpy(&memmap_entries, si + 48, 4);
	cr_assert_eq(magic, 0x336ec578);
	cr_assert_eq(version, 1);
	cr_assert_str_eq((const char *)gpa_to_hva(&bt_mem, cmdline, 1), "pvh cmdline");
	cr_assert_eq(rsdp, ACPI_RSDP_ADDR);
	cr_assert_eq(nr_modules, 1);
	uint64_t mod[2];
	memcpy(mod, gpa_to_hva(&bt_mem, modlist, 16), 16);
	cr_assert_eq(mod[0], s.initrd_addr);
	cr_assert_eq(mod[1], sizeof(initrd));
	cr_assert_eq(memcmp(gpa_to_hva(&bt_mem, mod[0], 3), initrd, 3), 0);
	cr_assert_eq(memmap_entries, 4);
	uint64_t last[2];
	memcpy(last, gpa_to_hva(&bt_mem, memmap + 2 * 24, 16), 16);
	cr_assert_eq(last[0] + last[1], 64 << 20);
}

Test(boot, elf_segment_outside_memory_is_refused)
{
	struct bt_elf elf;
	bt_build_elf64(&elf, false);
	Elf64_Phdr *ph = (Elf64_Phdr *)(elf.bytes + sizeof(Elf64_Ehdr));
	ph[0].p_paddr = 0x10000000 - 16; /* straddles the end of 256 MiB */
	ph[0].p_memsz = 4096;
	bt_make_memory(256 << 20);
	struct x86_boot_args a = {.kernel = elf.bytes,
				  .kernel_size = elf.len,
				  .kernel_name = "t",
				  .cmdline = "",
				  .ncpus = 1};
	struct x86_boot_setup s;
	struct errbuf e;
	cr_assert_eq(x86_boot_load(&bt_mem, &a, &s, &e), -ENOSPC);
	cr_assert(strstr(e.msg, "--mem"), "%s", e.msg);
	ph[0].p_paddr = 0x8000; /* where kvmini's boot stack and page tables live */
	ph[0].p_memsz = 0x2000;
	cr_assert_eq(x86_boot_load(&bt_mem, &a, &s, &e), -EINVAL);
	cr_assert(
	    strstr(e.msg, "segment 0 [0x8000-0xa000) overlaps the boot stack [0x8000-0x9000)"),
	    "names both ranges: %s", e.msg);
	ph[0].p_paddr = 0x100000;
	ph[0].p_offset = UINT64_MAX - 8; /* offset + size overflows */
	cr_assert_eq(x86_boot_load(&bt_mem, &a, &s, &e), -ENOEXEC, "%s", e.msg);
}

/* What GNU ld makes of `-Ttext=0x100000` with its default script: the ELF and program
 * headers in a read-only PT_LOAD of their own just below the text (0xff000), the code at
 * 1 MiB, and .note.gnu.build-id in a read-only PT_LOAD at the default base (0x400000 for
 * x86-64, 0x08048000 for i386), described by a PT_NOTE too. */
#define BT_GNU_NPHDR 5
static void bt_build_gnu_ld_elf(struct bt_elf *out, uint64_t note_addr)
{
	bt_build_elf64(out, false);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)out->bytes;
	eh->e_phnum = BT_GNU_NPHDR;
	Elf64_Phdr *ph = (Elf64_Phdr *)(out->bytes + sizeof(*eh));
	uint64_t hdrs = sizeof(*eh) + BT_GNU_NPHDR * sizeof(Elf64_Phdr);
	ph[0] = (Elf64_Phdr){.p_type = PT_LOAD,
			     .p_vaddr = 0xff000,
			     .p_paddr = 0xff000,
			     .p_filesz = hdrs,
			     .p_memsz = hdrs,
			     .p_flags = PF_R};
	ph[1] = (Elf64_Phdr){.p_type = PT_LOAD,
			     .p_offset = 4096,
			     .p_vaddr = 0x100000,
			     .p_paddr = 0x100000,
			     .p_filesz = 64,
			     .p_memsz = 8192,
			     .p_flags = PF_R | PF_X};
	ph[2] = (Elf64_Phdr){.p_type = PT_LOAD,
			     .p_offset = 4096 + 64,
			     .p_vaddr = note_addr,
			     .p_paddr = note_addr,
			     .p_filesz = 36,
			     .p_memsz = 36,
			     .p_flags = PF_R};
	ph[3] = ph[2];
	ph[3].p_type = PT_NOTE;
	ph[4] = (Elf64_Phdr){.p_type = PT_GNU_STACK, .p_flags = PF_R | PF_W};
	uint32_t note[3] = {4, 20, 3}; /* "GNU", NT_GNU_BUILD_ID */
	memcpy(out->bytes + 4096 + 64, note, 12);
	memcpy(out->bytes + 4096 + 64 + 12, "GNU", 4);
	memset(out->bytes + 4096 + 64 + 16, 0xab, 20);
	out->len = 4096 + 64 + 36;
}

static int bt_load_elf(const struct bt_elf *elf, struct x86_boot_setup *s, struct errbuf *e)
{
	struct x86_boot_args a = {.kernel = elf->bytes,
				  .kernel_size = elf->len,
				  .kernel_name = "t",
				  .cmdline = "gnu ld",
				  .ncpus = 2};
	return x86_boot_load(&bt_mem, &a, s, e);
}

Test(boot, gnu_ld_layout_header_segment_below_1m_is_loaded)
{
	struct bt_elf elf;
	bt_build_gnu_ld_elf(&elf, 0x400000);
	bt_make_memory(64 << 20);
	struct x86_boot_setup s;
	struct errbuf e;
	cr_assert_eq(bt_load_elf(&elf, &s, &e), 0, "%s", e.msg);
	cr_assert_eq(s.entry, 0x100010);
	/* QEMU loads the header segment too: it is clear of the MP table's real extent. */
	cr_assert_eq(memcmp(bt_ram + 0xff000, elf.bytes, SELFMAG), 0);
	cr_assert_eq(memcmp(bt_ram + 0x400000 + 12, "GNU", 4), 0, "the note segment fits: loaded");
	cr_assert_eq(s.kernel_start, 0x100000, "header and note segments are not the kernel");
	cr_assert_eq(s.kernel_end, 0x102000);
	/* The MP table and ACPI tables are intact after the load. */
	cr_assert_eq(memcmp(bt_ram + 0xf0000, "_MP_", 4), 0);
	cr_assert_eq(memcmp(bt_ram + ACPI_RSDP_ADDR, "RSD PTR ", 8), 0);
}

Test(boot, gnu_ld_layout_note_segment_beyond_ram_is_skipped)
{
	struct bt_elf elf;
	bt_build_gnu_ld_elf(&elf, 0x08048000); /* i386's default base: 128 MiB + 32 KiB */
	bt_make_memory(64 << 20);
	struct x86_boot_setup s;
	struct errbuf e;
	cr_assert_eq(bt_load_elf(&elf, &s, &e), 0, "%s", e.msg);
	cr_assert_eq(s.mode, X86_ENTRY_LINUX64);
	cr_assert_eq(bt_ram[0x100000], 0x90);
}

Test(boot, header_segment_over_the_boot_tables_is_skipped_not_refused)
{
	struct bt_elf elf;
	bt_build_gnu_ld_elf(&elf, 0x400000);
	Elf64_Phdr *ph = (Elf64_Phdr *)(elf.bytes + sizeof(Elf64_Ehdr));
	ph[0].p_paddr = ph[0].p_vaddr = X86_ZERO_PAGE_ADDR;
	bt_make_memory(64 << 20);
	struct x86_boot_setup s;
	struct errbuf e;
	cr_assert_eq(bt_load_elf(&elf, &s, &e), 0, "%s", e.msg);
	cr_assert_eq(bt_zero_page()->hdr.cmd_line_ptr, X86_CMDLINE_ADDR, "zero page intact");
}

Test(boot, code_over_the_real_extent_of_the_tables_is_refused_and_beside_it_loads)
{
	struct bt_elf elf;
	bt_build_gnu_ld_elf(&elf, 0x400000);
	Elf64_Phdr *ph = (Elf64_Phdr *)(elf.bytes + sizeof(Elf64_Ehdr));
	Elf64_Ehdr *eh = (Elf64_Ehdr *)elf.bytes;
	bt_make_memory(64 << 20);
	struct x86_boot_setup s;
	struct errbuf e;
	/* Code at 0xf0000 lands on the MP floating pointer. */
	ph[1].p_paddr = ph[1].p_vaddr = 0xf0000;
	ph[1].p_memsz = 0x1000;
	eh->e_entry = 0xf0010;
	cr_assert_eq(bt_load_elf(&elf, &s, &e), -EINVAL);
	cr_assert(strstr(e.msg, "segment 1 [0xf0000-0xf1000) overlaps the MP table [0xf0000-0xf0"),
		  "%s", e.msg);
	/* Code at 0xe0100 overlaps the RSDP and XSDT. */
	ph[1].p_paddr = ph[1].p_vaddr = 0xe0100 - 0x100;
	eh->e_entry = 0xe0010;
	cr_assert_eq(bt_load_elf(&elf, &s, &e), -EINVAL);
	cr_assert(strstr(e.msg, "the ACPI tables [0xe0000-0xe"), "%s", e.msg);
	/* The same code at 0xf8000, past the tables' real end, loads. */
	ph[1].p_paddr = ph[1].p_vaddr = 0xf8000;
	eh->e_entry = 0xf8010;
	cr_assert_eq(bt_load_elf(&elf, &s, &e), 0, "%s", e.msg);
	cr_assert_eq(s.entry, 0xf8010);
	cr_assert_eq(bt_ram[0xf8000], 0x90);
}

Test(boot, entry_outside_the_identity_map_is_refused)
{
	struct bt_elf elf;
	bt_build_elf64(&elf, false);
	Elf64_Phdr *ph = (Elf64_Phdr *)(elf.bytes + sizeof(Elf64_Ehdr));
	Elf64_Ehdr *eh = (Elf64_Ehdr *)elf.bytes;
	ph[0].p_paddr = ph[0].p_vaddr = X86_MMIO_HOLE_END + 0x100000; /* RAM above 4 GiB */
	eh->e_entry = ph[0].p_paddr + 0x10;
	bt_make_memory(5ull << 30);
	struct x86_boot_setup s;
	struct errbuf e;
	cr_assert_eq(bt_load_elf(&elf, &s, &e), -ENOEXEC);
	cr_assert(strstr(e.msg, "0x100100010") && strstr(e.msg, "identity map"), "%s", e.msg);
}

/* boot.rst: the loader copies the setup header from the image and then writes the fields it
 * owns. A real Debian kernel, with those fields set to junk in the image, gets kvmini's. */
static void bt_poison_loader_fields(uint8_t *img)
{
	struct setup_header h;
	memcpy(&h, img + 0x1f1, sizeof(h));
	h.setup_data = 0xdead0000beefull;
	h.type_of_loader = 0x42;
	h.ext_loader_ver = 7;
	h.ext_loader_type = 9;
	h.loadflags |= CAN_USE_HEAP | KEEP_SEGMENTS | QUIET_FLAG;
	h.heap_end_ptr = 0xfe00;
	h.setup_move_size = 0x8000;
	h.code32_start = 0x12345678;
	h.hardware_subarch = 2;
	h.hardware_subarch_data = 0xabcdef;
	h.vid_mode = 0x0f04;
	h.cmd_line_ptr = 0x9999;
	h.ramdisk_image = 0x777000;
	h.ramdisk_size = 0x1000;
	memcpy(img + 0x1f1, &h, sizeof(h));
}

static void bt_check_loader_fields(const struct setup_header *orig)
{
	const struct setup_header *h = &bt_zero_page()->hdr;
	cr_assert_eq(h->setup_data, 0, "setup_data is the loader's: 0, there is no list");
	cr_assert_eq(h->type_of_loader, 0xff);
	cr_assert_eq(h->ext_loader_ver, 0);
	cr_assert_eq(h->ext_loader_type, 0);
	cr_assert_eq(h->loadflags, LOADED_HIGH);
	cr_assert_eq(h->heap_end_ptr, 0);
	cr_assert_eq(h->setup_move_size, 0);
	cr_assert_eq(h->code32_start, 0x100000);
	cr_assert_eq(h->hardware_subarch, 0);
	cr_assert_eq(h->hardware_subarch_data, 0);
	cr_assert_eq(h->vid_mode, 0xffff);
	cr_assert_eq(h->cmd_line_ptr, X86_CMDLINE_ADDR);
	cr_assert_eq(h->ramdisk_image, 0);
	cr_assert_eq(h->ramdisk_size, 0);
	/* What the kernel owns comes from the image. */
	cr_assert_eq(h->version, orig->version);
	cr_assert_eq(h->init_size, orig->init_size);
	cr_assert_eq(h->pref_address, orig->pref_address);
	cr_assert_eq(h->xloadflags, orig->xloadflags);
	cr_assert_eq(h->kernel_alignment, orig->kernel_alignment);
	cr_assert_eq(bt_zero_page()->sentinel, 0);
}

Test(boot, loader_fields_are_written_not_copied_from_the_image, .timeout = 60)
{
	size_t len;
	uint8_t *img = bt_read_kernel(&len);
	struct setup_header orig;
	memcpy(&orig, img + 0x1f1, sizeof(orig));
	bt_poison_loader_fields(img);
	bt_make_memory(512 << 20);
	enum boot_decompress modes[] = {BOOT_DECOMPRESS_HOST, BOOT_DECOMPRESS_GUEST};
	for (unsigned i = 0; i < 2; i++) {
		struct x86_boot_args a = {.kernel = img,
					  .kernel_size = len,
					  .kernel_name = "cloud",
					  .cmdline = "console=ttyS0",
					  .decompress = modes[i],
					  .ncpus = 1};
		struct x86_boot_setup s;
		struct errbuf e;
		cr_assert_eq(x86_boot_load(&bt_mem, &a, &s, &e), 0, "%s", e.msg);
		bt_check_loader_fields(&orig);
	}
	free(img);
}

/* Writes n bytes of a pattern to an unlinked temporary file and returns its fd. */
static int bt_initrd_fd(size_t n)
{
	char path[] = "/tmp/kvmini-initrd-XXXXXX";
	int fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	unlink(path);
	uint8_t *buf = malloc(n);
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)(i * 7 + (i >> 12));
	cr_assert_eq(write(fd, buf, n), (ssize_t)n);
	free(buf);
	return fd;
}

Test(boot, initrd_is_read_from_its_fd_into_guest_ram)
{
	struct bt_elf elf;
	bt_build_elf64(&elf, false);
	bt_make_memory(64 << 20);
	const size_t n = 3 << 20;
	int fd = bt_initrd_fd(n);
	struct x86_boot_args a = {.kernel = elf.bytes,
				  .kernel_size = elf.len,
				  .kernel_name = "t",
				  .initrd_fd = fd,
				  .initrd_size = n,
				  .cmdline = "",
				  .ncpus = 1};
	struct x86_boot_setup s;
	struct errbuf e;
	cr_assert_eq(x86_boot_load(&bt_mem, &a, &s, &e), 0, "%s", e.msg);
	cr_assert_eq(s.initrd_size, n);
	const uint8_t *p = gpa_to_hva(&bt_mem, s.initrd_addr, n);
	for (size_t i = 0; i < n; i += 4093)
		cr_assert_eq(p[i], (uint8_t)(i * 7 + (i >> 12)), "byte %zu", i);
	cr_assert_eq(p[n - 1], (uint8_t)((n - 1) * 7 + ((n - 1) >> 12)));
	/* The file shrinks under us: an error, not a short initrd. */
	cr_assert_eq(ftruncate(fd, n / 2), 0);
	cr_assert_eq(x86_boot_load(&bt_mem, &a, &s, &e), -EIO);
	cr_assert(strstr(e.msg, "initrd"), "%s", e.msg);
	close(fd);
}

/* A guest reset loads again with the same args: the same bytes everywhere kvmini writes. */
Test(boot, loading_twice_gives_the_same_guest_memory)
{
	struct bt_elf elf;
	bt_build_gnu_ld_elf(&elf, 0x400000);
	const uint64_t size = 64 << 20;
	bt_make_memory(size);
	int fd = bt_initrd_fd(1 << 20);
	struct x86_boot_args a = {.kernel = elf.bytes,
				  .kernel_size = elf.len,
				  .kernel_name = "t",
				  .initrd_fd = fd,
				  .initrd_size = 1 << 20,
				  .cmdline = "reboot me",
				  .ncpus = 3};
	struct x86_boot_setup s1, s2;
	struct errbuf e;
	cr_assert_eq(x86_boot_load(&bt_mem, &a, &s1, &e), 0, "%s", e.msg);
	uint8_t *first = malloc(size);
	memcpy(first, bt_ram, size);
	/* The guest ran and scribbled over its memory, tables included. */
	memset(bt_ram, 0x5a, size);
	cr_assert_eq(x86_boot_load(&bt_mem, &a, &s2, &e), 0, "%s", e.msg);
	cr_assert_eq(memcmp(&s1, &s2, sizeof(s1)), 0);
	const uint64_t ranges[][2] = {
	    {X86_GDT_ADDR, 0x30},
	    {X86_ZERO_PAGE_ADDR, 0x1000},
	    {X86_PML4_ADDR, 0x6000},
	    {X86_CMDLINE_ADDR, 10},
	    {ACPI_TABLES_START, acpi_tables_size(3)},
	    {MPTABLE_START, mptable_size(3)},
	    {0xff000, sizeof(Elf64_Ehdr) + BT_GNU_NPHDR * sizeof(Elf64_Phdr)},
	    {0x100000, 0x2000},
	    {s1.initrd_addr, 1 << 20}};
	for (unsigned i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++)
		cr_assert_eq(memcmp(first + ranges[i][0], bt_ram + ranges[i][0], ranges[i][1]), 0,
			     "range at 0x%llx differs after the second load",
			     (unsigned long long)ranges[i][0]);
	free(first);
	close(fd);
}

Test(boot, cpuid_is_patched_per_vcpu)
{
	size_t size = sizeof(struct kvm_cpuid2) + 3 * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *sup = calloc(1, size);
	sup->nent = 3;
	sup->entries[0] = (struct kvm_cpuid_entry2){.function = 1, .ebx = 0xff00aaaa};
	sup->entries[1] = (struct kvm_cpuid_entry2){.function = 0xb, .index = 0};
	sup->entries[2] = (struct kvm_cpuid_entry2){.function = 0xb, .index = 1};
	struct kvm_cpuid2 *c = x86_cpuid_for_vcpu(sup, 5, 8);
	cr_assert_not_null(c);
	cr_assert_eq(c->entries[0].ebx >> 24, 5, "initial APIC ID");
	cr_assert_eq((c->entries[0].ebx >> 16) & 0xff, 8, "logical processor count");
	cr_assert_eq(c->entries[0].ebx & 0xffff, 0xaaaa, "other EBX bits kept");
	cr_assert(c->entries[0].edx & (1u << 28), "HTT");
	cr_assert(c->entries[0].ecx & (1u << 31), "hypervisor bit");
	cr_assert_eq(c->entries[1].edx, 5, "x2APIC ID in leaf 0xb");
	cr_assert_eq(c->entries[2].ebx, 8, "8 logical CPUs at the core level");
	cr_assert_eq(c->entries[2].eax, 3, "APIC ID shift for 8 cores");
	cr_assert_eq(c->nent, 4, "KVM signature leaf added");
	cr_assert_eq(c->entries[3].function, 0x40000000);
	cr_assert_eq(memcmp(&c->entries[3].ebx, "KVMK", 4), 0);
	free(c);
	free(sup);
}
