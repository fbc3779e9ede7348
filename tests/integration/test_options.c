/* Options checked by their effect on the running kvmini process. The serial-echo guest
 * prints "serial-echo: ready" and waits for input; at that line the harness hands us the
 * pid, we read /proc/<pid> (status, smaps, task/<tid>/) and the huge-page pool while the VM
 * runs, then kvmini gets SIGTERM. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <elf.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"

#define MAX_TASKS 32

struct task_info {
	int tid;
	char comm[32];
	char cpus[128]; /* Cpus_allowed_list */
};

/* What a probe finds; the fields marked "in" are set by the test before the run. */
struct probe {
	unsigned long ram_kb; /* in: the guest RAM mapping is the rw-p mapping of this size */
	unsigned want_vcpus;  /* in: wait (up to 5 s) until this many "vcpu N" threads exist */
	bool called;
	int pid;
	long rss_kb; /* VmRSS */
	char comm[32];
	bool ram_found;
	char ram_vmflags[256];
	long ram_kernel_page_kb, ram_private_hugetlb_kb;
	struct task_info tasks[MAX_TASKS];
	unsigned ntasks, nvcpus;
	long hp_free, hp_resv; /* 2 MiB pool, -1 if unreadable */
};

/* The 2 MiB pool: what /proc/meminfo shows as HugePages_Free/HugePages_Rsvd when the default
 * huge page size is 2 MiB (kvmini asks for 2 MiB pages whatever the default). */
#define HP_DIR "/sys/kernel/mm/hugepages/hugepages-2048kB"

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static bool write_long(const char *path, long v)
{
	FILE *f = fopen(path, "w");
	if (!f)
		return false;
	bool ok = fprintf(f, "%ld\n", v) > 0;
	return fclose(f) == 0 && ok;
}

/* The value of "key:" in a /proc status-style file, whitespace trimmed; false if absent. */
static bool status_field(const char *path, const char *key, char *out, size_t outlen)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return false;
	char line[512];
	size_t klen = strlen(key);
	bool found = false;
	while (!found && fgets(line, sizeof(line), f)) {
		if (strncmp(line, key, klen) || line[klen] != ':')
			continue;
		const char *v = line + klen + 1;
		v += strspn(v, " \t");
		snprintf(out, outlen, "%s", v);
		out[strcspn(out, "\n")] = '\0';
		found = true;
	}
	fclose(f);
	return found;
}

static void read_line(const char *path, char *out, size_t outlen)
{
	out[0] = '\0';
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	if (!fgets(out, (int)outlen, f))
		out[0] = '\0';
	out[strcspn(out, "\n")] = '\0';
	fclose(f);
}

static void probe_smaps(int pid, struct probe *p)
{
	char path[64], line[512];
	snprintf(path, sizeof(path), "/proc/%d/smaps", pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return;
	bool in_ram = false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end;
		char perms[8];
		/* A mapping's header line: "start-end perms offset dev inode [path]". */
		if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) == 3) {
			in_ram = !p->ram_found && !strcmp(perms, "rw-p") &&
				 (end - start) / 1024 == p->ram_kb;
			continue;
		}
		if (!in_ram)
			continue;
		long v;
		if (sscanf(line, "KernelPageSize: %ld kB", &v) == 1)
			p->ram_kernel_page_kb = v;
		else if (sscanf(line, "Private_Hugetlb: %ld kB", &v) == 1)
			p->ram_private_hugetlb_kb = v;
		else if (!strncmp(line, "VmFlags:", 8)) {
			snprintf(p->ram_vmflags, sizeof(p->ram_vmflags), "%.200s", line + 8);
			p->ram_vmflags[strcspn(p->ram_vmflags, "\n")] = '\0';
			p->ram_found = true;
			in_ram = false;
		}
	}
	fclose(f);
}

static void probe_tasks(int pid, struct probe *p)
{
	char path[96];
	p->ntasks = p->nvcpus = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", pid);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)) && p->ntasks < MAX_TASKS) {
		if (de->d_name[0] == '.')
			continue;
		struct task_info *t = &p->tasks[p->ntasks++];
		t->tid = atoi(de->d_name);
		snprintf(path, sizeof(path), "/proc/%d/task/%d/comm", pid, t->tid);
		read_line(path, t->comm, sizeof(t->comm));
		snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, t->tid);
		if (!status_field(path, "Cpus_allowed_list", t->cpus, sizeof(t->cpus)))
			t->cpus[0] = '\0';
		if (!strncmp(t->comm, "vcpu ", 5))
			p->nvcpus++;
	}
	closedir(d);
}

static void probe_proc(int pid, void *arg)
{
	struct probe *p = arg;
	p->called = true;
	p->pid = pid;
	char path[64], v[64];
	/* Each vCPU thread names itself when it starts: give the last one a moment. */
	for (unsigned i = 0; i < 500; i++) {
		probe_tasks(pid, p);
		if (p->nvcpus >= p->want_vcpus)
			break;
		nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
	}
	snprintf(path, sizeof(path), "/proc/%d/status", pid);
	p->rss_kb = status_field(path, "VmRSS", v, sizeof(v)) ? atol(v) : -1;
	snprintf(path, sizeof(path), "/proc/%d/comm", pid);
	read_line(path, p->comm, sizeof(p->comm));
	probe_smaps(pid, p);
	p->hp_free = read_long(HP_DIR "/free_hugepages");
	p->hp_resv = read_long(HP_DIR "/resv_hugepages");
}

/* Runs serial-echo with `opts`, probes kvmini once the guest is ready, then stops it. */
static void opts_run(const char *const opts[], struct probe *p)
{
	const char *argv[32] = {"kvmini", "run", "--kernel", harness_guest("serial-echo")};
	unsigned n = 4;
	for (unsigned i = 0; opts && opts[i] && n < 31; i++)
		argv[n++] = opts[i];
	argv[n] = NULL;
	const char *stop[] = {"serial-echo: ready", NULL};
	struct harness_opts o = {
	    .timeout_s = 30, .stop_when = stop, .inspect = probe_proc, .inspect_arg = p};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &o, &r), 0, "cannot run %s", harness_kvmini());
	cr_assert(p->called, "the guest never got ready (exit %d):\nstdout:\n%s\nstderr:\n%s",
		  r.exit_status, r.out, r.err);
	cr_assert_not(r.timed_out, "kvmini did not stop on SIGTERM:\n%s", r.err);
	cr_assert(r.exited && r.exit_status == 128 + 15, "exit %d signal %d:\n%s", r.exit_status,
		  r.term_signal, r.err);
	harness_result_free(&r);
}

static const struct task_info *task_named(const struct probe *p, const char *comm)
{
	for (unsigned i = 0; i < p->ntasks; i++)
		if (!strcmp(p->tasks[i].comm, comm))
			return &p->tasks[i];
	return NULL;
}

static const struct task_info *task_tid(const struct probe *p, int tid)
{
	for (unsigned i = 0; i < p->ntasks; i++)
		if (p->tasks[i].tid == tid)
			return &p->tasks[i];
	return NULL;
}

TestSuite(options, .timeout = 60);

Test(options, mem_prealloc_makes_the_whole_guest_resident)
{
	enum { MEM_MB = 256 };
	struct probe with = {.ram_kb = MEM_MB * 1024, .want_vcpus = 1};
	opts_run((const char *[]){"--mem", "256M", "--mem-prealloc", NULL}, &with);
	cr_assert_geq(with.rss_kb, MEM_MB * 1024,
		      "VmRSS %ld kB with --mem-prealloc, the guest has %d MiB", with.rss_kb,
		      MEM_MB);

	struct probe without = {.ram_kb = MEM_MB * 1024, .want_vcpus = 1};
	opts_run((const char *[]){"--mem", "256M", NULL}, &without);
	cr_assert_gt(without.rss_kb, 0);
	cr_assert_lt(without.rss_kb, MEM_MB * 1024 / 4,
		     "VmRSS %ld kB without --mem-prealloc: guest RAM should be allocated only "
		     "when touched",
		     without.rss_kb);
}

Test(options, ksm_marks_the_guest_ram_mergeable)
{
	if (access("/sys/kernel/mm/ksm", F_OK) != 0)
		cr_skip_test("the host kernel has no KSM (no /sys/kernel/mm/ksm)");
	/* 80 MiB: a size no other mapping of kvmini has (glibc's arenas are 64 MiB). */
	struct probe with = {.ram_kb = 80 * 1024, .want_vcpus = 1};
	opts_run((const char *[]){"--mem", "80M", "--ksm", NULL}, &with);
	cr_assert(with.ram_found, "no 80 MiB rw-p mapping (the guest RAM) in smaps");
	cr_assert(strstr(with.ram_vmflags, " mg"), "--ksm: guest RAM VmFlags are '%s', no 'mg'",
		  with.ram_vmflags);

	struct probe without = {.ram_kb = 80 * 1024, .want_vcpus = 1};
	opts_run((const char *[]){"--mem", "80M", NULL}, &without);
	cr_assert(without.ram_found, "no 80 MiB rw-p mapping (the guest RAM) in smaps");
	cr_assert_null(strstr(without.ram_vmflags, " mg"),
		       "without --ksm the guest RAM is mergeable: VmFlags '%s'",
		       without.ram_vmflags);
}

Test(options, cpu_affinity_pins_each_vcpu_thread)
{
	cpu_set_t own;
	if (sched_getaffinity(0, sizeof(own), &own) < 0 || !CPU_ISSET(0, &own) ||
	    !CPU_ISSET(1, &own))
		cr_skip_test("this test may not run on both host CPUs 0 and 1");
	char own_list[128];
	cr_assert(
	    status_field("/proc/self/status", "Cpus_allowed_list", own_list, sizeof(own_list)));

	struct probe p = {.ram_kb = 64 * 1024, .want_vcpus = 2};
	opts_run((const char *[]){"--cpus", "2", "--cpu-affinity", "0=1,1=0", NULL}, &p);
	const struct task_info *v0 = task_named(&p, "vcpu 0"), *v1 = task_named(&p, "vcpu 1");
	cr_assert(v0 && v1, "no threads named 'vcpu 0' and 'vcpu 1' (%u tasks)", p.ntasks);
	cr_assert_str_eq(v0->cpus, "1", "vCPU 0 was pinned to host CPU 1: Cpus_allowed_list %s",
			 v0->cpus);
	cr_assert_str_eq(v1->cpus, "0", "vCPU 1 was pinned to host CPU 0: Cpus_allowed_list %s",
			 v1->cpus);
	/* The main thread (the event loop) is not pinned. */
	const struct task_info *main_thread = task_tid(&p, p.pid);
	cr_assert_not_null(main_thread);
	cr_assert_str_eq(main_thread->cpus, own_list, "the main thread was pinned too: %s",
			 main_thread->cpus);

	struct probe free_run = {.ram_kb = 64 * 1024, .want_vcpus = 2};
	opts_run((const char *[]){"--cpus", "2", NULL}, &free_run);
	v0 = task_named(&free_run, "vcpu 0");
	v1 = task_named(&free_run, "vcpu 1");
	cr_assert(v0 && v1, "no threads named 'vcpu 0' and 'vcpu 1'");
	cr_assert_str_eq(v0->cpus, own_list, "unpinned vCPU 0 runs only on %s", v0->cpus);
	cr_assert_str_eq(v1->cpus, own_list, "unpinned vCPU 1 runs only on %s", v1->cpus);
}

Test(options, name_is_the_process_name)
{
	struct probe p = {.ram_kb = 64 * 1024, .want_vcpus = 1};
	opts_run((const char *[]){"--name", "vm-under-test", NULL}, &p);
	cr_assert_str_eq(p.comm, "vm-under-test");

	/* QEMU's spelling; the kernel keeps the first 15 bytes. */
	struct probe q = {.ram_kb = 64 * 1024, .want_vcpus = 1};
	opts_run((const char *[]){"-name", "a-rather-long-guest-name", NULL}, &q);
	cr_assert_str_eq(q.comm, "a-rather-long-g");
}

/* Reserves `pages` more 2 MiB huge pages; skips (after restoring) when it cannot. Returns
 * the count to restore. */
static long hp_reserve(long pages)
{
	long before = read_long(HP_DIR "/nr_hugepages");
	if (before < 0 || !write_long(HP_DIR "/nr_hugepages", before + pages))
		cr_skip_test("cannot reserve huge pages here (needs root and " HP_DIR ")");
	if (read_long(HP_DIR "/free_hugepages") - read_long(HP_DIR "/resv_hugepages") < pages) {
		write_long(HP_DIR "/nr_hugepages", before);
		cr_skip_test("the kernel could not reserve %ld more 2 MiB huge pages", pages);
	}
	return before;
}

Test(options, hugepages_back_the_guest_ram)
{
	enum { PAGES = 32 }; /* --mem 64M */
	long before = hp_reserve(PAGES);
	long free0 = read_long(HP_DIR "/free_hugepages"),
	     resv0 = read_long(HP_DIR "/resv_hugepages");

	struct probe p = {.ram_kb = PAGES * 2048, .want_vcpus = 1};
	struct probe pre = {.ram_kb = PAGES * 2048, .want_vcpus = 1};
	opts_run((const char *[]){"--hugepages", "--mem", "64M", NULL}, &p);
	long free1 = read_long(HP_DIR "/free_hugepages");
	opts_run((const char *[]){"--hugepages", "--mem-prealloc", "--mem", "64M", NULL}, &pre);
	long free2 = read_long(HP_DIR "/free_hugepages"),
	     resv2 = read_long(HP_DIR "/resv_hugepages");
	write_long(HP_DIR "/nr_hugepages", before);

	cr_assert(p.ram_found, "no 64 MiB rw-p mapping (the guest RAM) in smaps");
	cr_assert_eq(p.ram_kernel_page_kb, 2048, "guest RAM is in %ld kB pages",
		     p.ram_kernel_page_kb);
	/* The whole guest is promised at start-up (reserved, taken when touched). */
	cr_assert_eq((free0 - resv0) - (p.hp_free - p.hp_resv), PAGES,
		     "huge pages free-reserved went from %ld to %ld while the guest ran",
		     free0 - resv0, p.hp_free - p.hp_resv);
	cr_assert_lt(p.hp_free, free0, "the guest touched no huge page");
	/* With --mem-prealloc every page is taken at once. */
	cr_assert_eq(pre.ram_kernel_page_kb, 2048);
	cr_assert_eq(free0 - pre.hp_free, PAGES,
		     "HugePages_Free went from %ld to %ld with --mem-prealloc", free0, pre.hp_free);
	cr_assert_eq(pre.ram_private_hugetlb_kb, PAGES * 2048);
	/* And given back when kvmini exits. */
	cr_assert_eq(free1, free0, "huge pages not returned after the run: %ld, was %ld", free1,
		     free0);
	cr_assert_eq(free2, free0);
	cr_assert_eq(resv2, resv0);
}

/* The guest ELF's code: [lo, hi) over its executable PT_LOAD segments. */
static void elf_text_range(const char *path, uint64_t *lo, uint64_t *hi)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "%s", path);
	Elf64_Ehdr eh;
	cr_assert_eq(fread(&eh, sizeof(eh), 1, f), 1);
	cr_assert_eq(eh.e_ident[EI_CLASS], ELFCLASS64, "%s is not ELF64", path);
	*lo = UINT64_MAX;
	*hi = 0;
	for (unsigned i = 0; i < eh.e_phnum; i++) {
		Elf64_Phdr ph;
		cr_assert_eq(fseek(f, (long)(eh.e_phoff + (uint64_t)i * eh.e_phentsize), SEEK_SET),
			     0);
		cr_assert_eq(fread(&ph, sizeof(ph), 1, f), 1);
		if (ph.p_type != PT_LOAD || !(ph.p_flags & PF_X))
			continue;
		if (ph.p_vaddr < *lo)
			*lo = ph.p_vaddr;
		if (ph.p_vaddr + ph.p_memsz > *hi)
			*hi = ph.p_vaddr + ph.p_memsz;
	}
	fclose(f);
	cr_assert_lt(*lo, *hi, "%s has no code segment", path);
}

/* --profile FILE: "MS VCPU RIP" lines from every vCPU, time stamps that go forward, and
 * RIPs where the guest's code is (the count guest spins in its own code). */
Test(options, profile_writes_where_each_vcpu_runs)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/kvmini-profile-%d", getpid());
	const char *guest = harness_guest("count");
	const char *argv[] = {"kvmini",	  "run", "-q",	      "--cpus", "2",
			      "--kernel", guest, "--profile", path,	NULL};
	struct harness_result r;
	cr_assert_eq(harness_run(argv, &(struct harness_opts){.timeout_s = 2}, &r), 0);
	harness_result_free(&r);
	uint64_t lo, hi;
	elf_text_range(guest, &lo, &hi);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "--profile wrote no %s", path);
	unsigned long long ms, rip, last_ms[2] = {0, 0};
	unsigned cpu, n[2] = {0, 0}, in_code = 0, total = 0;
	int got;
	while ((got = fscanf(f, "%llu %u %llx", &ms, &cpu, &rip)) == 3) {
		cr_assert_lt(cpu, 2, "a sample names vCPU %u of 2", cpu);
		cr_assert_geq(ms, last_ms[cpu], "vCPU %u's time stamps go back", cpu);
		cr_assert_lt(ms, 10000, "a time stamp of %llu ms in a 2 s run", ms);
		last_ms[cpu] = ms;
		n[cpu]++;
		total++;
		in_code += rip >= lo && rip < hi;
	}
	cr_assert_eq(got, EOF, "a line that is not \"MS VCPU RIP\" after %u samples", total);
	fclose(f);
	unlink(path);
	/* 50 a second for about 2 s each; loosely, as the host may be busy. */
	cr_assert(n[0] >= 20 && n[1] >= 20, "samples: vCPU 0 %u, vCPU 1 %u", n[0], n[1]);
	cr_assert_geq(in_code * 10, total * 9, "%u of %u RIPs in the guest's code [%llx, %llx)",
		      in_code, total, (unsigned long long)lo, (unsigned long long)hi);
}
