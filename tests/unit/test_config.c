#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include "config.h"

static struct vm_config cfgt_cfg;
static struct errbuf cfgt_err;

static int cfgt_parse_list(const char **args)
{
	int n = 0;

	while (args[n])
		n++;
	memset(&cfgt_err, 0, sizeof(cfgt_err));
	/* config_parse_run must not depend on what was in cfg before. */
	memset(&cfgt_cfg, 0x5a, sizeof(cfgt_cfg));
	return config_parse_run(&cfgt_cfg, n, (char **)args, &cfgt_err);
}

#define CFGT_PARSE(...) cfgt_parse_list((const char *[]){__VA_ARGS__, NULL})

#define CFGT_OK(...)                                                            \
	do {                                                                    \
		int r_ = CFGT_PARSE(__VA_ARGS__);                               \
		cr_assert_eq(r_, 0, "parse failed (%d): %s", r_, cfgt_err.msg); \
	} while (0)

/* Every error must be -EINVAL, one line, and contain each of the given fragments. */
#define CFGT_ERR(needles, ...)                                                                   \
	do {                                                                                     \
		int r_ = CFGT_PARSE(__VA_ARGS__);                                                \
		cr_assert_eq(r_, -EINVAL, "expected -EINVAL, got %d (%s)", r_, cfgt_err.msg);    \
		cr_assert_gt(strlen(cfgt_err.msg), 0);                                           \
		cr_assert_null(strchr(cfgt_err.msg, '\n'), "two lines: %s", cfgt_err.msg);       \
		const char *n_[] = {needles};                                                    \
		for (size_t i_ = 0; i_ < sizeof(n_) / sizeof(n_[0]); i_++)                       \
			cr_assert_not_null(strstr(cfgt_err.msg, n_[i_]),                         \
					   "message \"%s\" lacks \"%s\"", cfgt_err.msg, n_[i_]); \
	} while (0)

#define CFGT_SAY(...) __VA_ARGS__

Test(config, defaults)
{
	cr_assert_eq(CFGT_PARSE(NULL), 0);
	cr_assert_null(cfgt_cfg.kernel_path);
	cr_assert_null(cfgt_cfg.initrd_path);
	cr_assert_str_eq(cfgt_cfg.cmdline, "");
	cr_assert_str_eq(cfgt_cfg.name, "kvmini");
	cr_assert_eq(cfgt_cfg.mem_size, 256ull << 20);
	cr_assert_eq(cfgt_cfg.ncpus, 1);
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_STDIO);
	cr_assert_null(cfgt_cfg.serial[0].path);
	cr_assert_eq(cfgt_cfg.boot_decompress, BOOT_DECOMPRESS_AUTO);
	cr_assert(!cfgt_cfg.hugepages && !cfgt_cfg.mem_prealloc && !cfgt_cfg.ksm);
	cr_assert(!cfgt_cfg.no_reboot);
	cr_assert_eq(cfgt_cfg.verbosity, 0);
	for (int i = 0; i < KVMINI_MAX_VCPUS; i++)
		cr_assert_eq(cfgt_cfg.cpu_affinity[i], -1);
}

Test(config, config_init_matches_defaults)
{
	struct vm_config c;

	config_init(&c);
	cr_assert_eq(c.mem_size, KVMINI_DEFAULT_MEM);
	cr_assert_eq(c.ncpus, 1);
	cr_assert_str_eq(c.cmdline, "");
	cr_assert_str_eq(c.name, "kvmini");
	cr_assert_eq(c.cpu_affinity[63], -1);
}

Test(config, every_kvmini_option)
{
	CFGT_OK("--kernel", "/k/bzImage", "--initrd", "/k/initrd", "--append", "console=ttyS0",
		"--mem", "512M", "--cpus", "4", "--console", "file:/tmp/log", "--name", "vm1",
		"--hugepages", "--mem-prealloc", "--ksm", "--cpu-affinity", "0=2,3=1",
		"--boot-decompress", "guest", "-v");
	cr_assert_str_eq(cfgt_cfg.kernel_path, "/k/bzImage");
	cr_assert_str_eq(cfgt_cfg.initrd_path, "/k/initrd");
	cr_assert_str_eq(cfgt_cfg.cmdline, "console=ttyS0");
	cr_assert_eq(cfgt_cfg.mem_size, 512ull << 20);
	cr_assert_eq(cfgt_cfg.ncpus, 4);
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_FILE);
	cr_assert_str_eq(cfgt_cfg.serial[0].path, "/tmp/log");
	cr_assert_str_eq(cfgt_cfg.name, "vm1");
	cr_assert(cfgt_cfg.hugepages && cfgt_cfg.mem_prealloc && cfgt_cfg.ksm);
	cr_assert_eq(cfgt_cfg.cpu_affinity[0], 2);
	cr_assert_eq(cfgt_cfg.cpu_affinity[1], -1);
	cr_assert_eq(cfgt_cfg.cpu_affinity[2], -1);
	cr_assert_eq(cfgt_cfg.cpu_affinity[3], 1);
	cr_assert_eq(cfgt_cfg.boot_decompress, BOOT_DECOMPRESS_GUEST);
	cr_assert_eq(cfgt_cfg.verbosity, 1);
}

Test(config, equals_form)
{
	CFGT_OK("--kernel=/k/bz", "--initrd=/k/rd", "--append=root=/dev/vda ro", "--mem=1G",
		"--cpus=2", "--console=none", "--name=x", "--cpu-affinity=1=5",
		"--boot-decompress=host", "-m=2G");
	cr_assert_str_eq(cfgt_cfg.kernel_path, "/k/bz");
	cr_assert_str_eq(cfgt_cfg.initrd_path, "/k/rd");
	/* Only the first '=' separates: the command line keeps its own. */
	cr_assert_str_eq(cfgt_cfg.cmdline, "root=/dev/vda ro");
	cr_assert_eq(cfgt_cfg.mem_size, 2ull << 30);
	cr_assert_eq(cfgt_cfg.ncpus, 2);
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_NONE);
	cr_assert_str_eq(cfgt_cfg.name, "x");
	cr_assert_eq(cfgt_cfg.cpu_affinity[1], 5);
	cr_assert_eq(cfgt_cfg.boot_decompress, BOOT_DECOMPRESS_HOST);
}

Test(config, cmdline_alias_and_last_wins)
{
	CFGT_OK("--cmdline", "a=1");
	cr_assert_str_eq(cfgt_cfg.cmdline, "a=1");
	CFGT_OK("--append", "first", "--cmdline", "second");
	cr_assert_str_eq(cfgt_cfg.cmdline, "second");
	CFGT_OK("--append=");
	cr_assert_str_eq(cfgt_cfg.cmdline, "");
}

Test(config, console_modes)
{
	CFGT_OK("--console", "none");
	cr_assert_eq(cfgt_cfg.nserials, 1);
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_NONE);
	CFGT_OK("--console", "file:out.txt");
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_FILE);
	cr_assert_str_eq(cfgt_cfg.serial[0].path, "out.txt");
}

Test(config, boot_decompress_modes)
{
	CFGT_OK("--boot-decompress", "auto");
	cr_assert_eq(cfgt_cfg.boot_decompress, BOOT_DECOMPRESS_AUTO);
	CFGT_OK("--boot-decompress", "host");
	cr_assert_eq(cfgt_cfg.boot_decompress, BOOT_DECOMPRESS_HOST);
	CFGT_OK("--boot-decompress", "guest");
	cr_assert_eq(cfgt_cfg.boot_decompress, BOOT_DECOMPRESS_GUEST);
}

Test(config, verbosity)
{
	CFGT_OK("-v", "-v", "--verbose");
	cr_assert_eq(cfgt_cfg.verbosity, 3);
	CFGT_OK("-vvv");
	cr_assert_eq(cfgt_cfg.verbosity, 3);
	CFGT_OK("-q");
	cr_assert_eq(cfgt_cfg.verbosity, -1);
	CFGT_OK("--quiet");
	cr_assert_eq(cfgt_cfg.verbosity, -1);
	CFGT_OK("-v", "-q");
	cr_assert_eq(cfgt_cfg.verbosity, -1);
}

Test(config, help)
{
	cr_assert_eq(CFGT_PARSE("-h"), 1);
	cr_assert_eq(CFGT_PARSE("--help"), 1);
	cr_assert_eq(CFGT_PARSE("-help"), 1);
	cr_assert_eq(CFGT_PARSE("--mem", "1G", "--help", "--frobnicate"), 1);
}

Test(config, cpu_counts)
{
	CFGT_OK("--cpus", "1");
	cr_assert_eq(cfgt_cfg.ncpus, 1);
	CFGT_OK("--cpus", "64");
	cr_assert_eq(cfgt_cfg.ncpus, 64);
}

Test(config, mem_sizes)
{
	static const struct {
		const char *s;
		uint64_t bytes;
	} cases[] = {
	    {"2M", 2ull << 20},	      {"2", 2ull << 20},
	    {"1024", 1ull << 30},     {"4096K", 4ull << 20},
	    {"1G", 1ull << 30},	      {"1T", 1ull << 40},
	    {"512MiB", 512ull << 20}, {"2GB", 2ull << 30},
	    {"3GiB", 3ull << 30},     {"8192KiB", 8ull << 20},
	    {"8192KB", 8ull << 20},   {"1g", 1ull << 30},
	    {"768m", 768ull << 20},   {"1000004K", 1000004ull << 10},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CFGT_OK("--mem", cases[i].s);
		cr_assert_eq(cfgt_cfg.mem_size, cases[i].bytes, "--mem %s", cases[i].s);
	}
}

Test(config, parse_size)
{
	uint64_t v = 0;

	cr_assert_eq(config_parse_size("512M", &v), 0);
	cr_assert_eq(v, 512ull << 20);
	cr_assert_eq(config_parse_size("1024", &v), 0);
	cr_assert_eq(v, 1ull << 30);
	cr_assert_eq(config_parse_size("0", &v), 0, "zero is a size; --mem rejects it");
	cr_assert_eq(v, 0);
	cr_assert_eq(config_parse_size("1K", &v), 0);
	cr_assert_eq(v, 1024);
	cr_assert_eq(config_parse_size("16777215T", &v), 0);
	cr_assert_eq(v, 16777215ull << 40);

	static const char *const invalid[] = {"",   "M",     "-1",  "+1",   " 1",   "1 ",    "1.5G",
					      "1X", "1GiB ", "1Gi", "1GBB", "0x10", "1KiBb", "G1"};
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		cr_assert_eq(config_parse_size(invalid[i], &v), -EINVAL, "'%s'", invalid[i]);

	cr_assert_eq(config_parse_size("16777216T", &v), -ERANGE);
	cr_assert_eq(config_parse_size("99999999T", &v), -ERANGE);
	cr_assert_eq(config_parse_size("18446744073709551616K", &v), -ERANGE);
	cr_assert_eq(config_parse_size("99999999999999999999999999", &v), -ERANGE);
}

Test(config, classic_qemu_command_line)
{
	CFGT_OK("-enable-kvm", "-m", "1024", "-smp", "2", "-kernel", "bzImage", "-append",
		"root=/dev/vda console=ttyS0", "-nographic");
	cr_assert_eq(cfgt_cfg.mem_size, 1ull << 30);
	cr_assert_eq(cfgt_cfg.ncpus, 2);
	cr_assert_str_eq(cfgt_cfg.kernel_path, "bzImage");
	cr_assert_str_eq(cfgt_cfg.cmdline, "root=/dev/vda console=ttyS0");
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_STDIO);
}

Test(config, qemu_spellings)
{
	CFGT_OK("-kernel", "k", "-initrd", "i", "-name", "guest1", "-no-reboot", "-cpu", "host",
		"-accel", "kvm", "-mem-prealloc", "-serial", "none");
	cr_assert_str_eq(cfgt_cfg.kernel_path, "k");
	cr_assert_str_eq(cfgt_cfg.initrd_path, "i");
	cr_assert_str_eq(cfgt_cfg.name, "guest1");
	cr_assert(cfgt_cfg.no_reboot);
	cr_assert(cfgt_cfg.mem_prealloc);
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_NONE);

	CFGT_OK("--smp", "3", "--m", "size=3G", "--serial", "file:/x", "--enable-kvm");
	cr_assert_eq(cfgt_cfg.ncpus, 3);
	cr_assert_eq(cfgt_cfg.mem_size, 3ull << 30);
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_FILE);
	cr_assert_str_eq(cfgt_cfg.serial[0].path, "/x");
}

Test(config, qemu_m_forms)
{
	CFGT_OK("-m", "1024");
	cr_assert_eq(cfgt_cfg.mem_size, 1ull << 30);
	CFGT_OK("-m", "1G");
	cr_assert_eq(cfgt_cfg.mem_size, 1ull << 30);
	CFGT_OK("-m", "size=1G");
	cr_assert_eq(cfgt_cfg.mem_size, 1ull << 30);
	CFGT_OK("-m", "size=512");
	cr_assert_eq(cfgt_cfg.mem_size, 512ull << 20);
}

Test(config, qemu_smp_forms)
{
	static const struct {
		const char *s;
		unsigned cpus;
	} cases[] = {
	    {"4", 4},
	    {"cpus=4", 4},
	    {"4,cores=2", 4},
	    {"4,sockets=1,cores=2,threads=2", 4},
	    {"cpus=8,maxcpus=8", 8},
	    {"maxcpus=6", 6},
	    {"sockets=2,cores=4", 8},
	    {"threads=2", 2},
	    {"64", 64},
	    {"6,sockets=3", 6},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		CFGT_OK("-smp", cases[i].s);
		cr_assert_eq(cfgt_cfg.ncpus, cases[i].cpus, "-smp %s", cases[i].s);
	}
}

Test(config, nographic_does_not_override_explicit_serial)
{
	CFGT_OK("-serial", "none", "-nographic");
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_NONE);
	CFGT_OK("-nographic", "-serial", "file:f");
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_FILE);
	CFGT_OK("-nographic");
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_STDIO);
	cr_assert(cfgt_cfg.serial[0].mux, "-nographic gives stdio with the monitor, as QEMU");
}

Test(config, affinity_may_precede_cpus)
{
	CFGT_OK("--cpu-affinity", "3=7", "--cpus", "4");
	cr_assert_eq(cfgt_cfg.cpu_affinity[3], 7);
	CFGT_OK("--cpu-affinity", "0=1", "--cpu-affinity", "1=1023", "-smp", "2");
	cr_assert_eq(cfgt_cfg.cpu_affinity[0], 1);
	cr_assert_eq(cfgt_cfg.cpu_affinity[1], 1023);
}

/* ---- errors ---- */

Test(config, unknown_options_are_named)
{
	CFGT_ERR(CFGT_SAY("unknown option '-drive'", "does not support it yet",
			  "virtio block devices arrive in a later version"),
		 "-drive", "file=disk.img,if=virtio");
	CFGT_ERR(CFGT_SAY("unknown option '-netdev'", "does not support it yet"), "-netdev",
		 "user,id=n0");
	CFGT_ERR(CFGT_SAY("unknown option '--frobnicate'"), "--frobnicate");
	CFGT_ERR(CFGT_SAY("unknown option '--frobnicate'"), "--mem", "1G", "--frobnicate=3");
	CFGT_ERR(CFGT_SAY("unknown option '-machine'"), "-machine", "accel=kvm");
	CFGT_ERR(CFGT_SAY("unknown option '-device'"), "-device", "virtio-net");
	CFGT_ERR(CFGT_SAY("unknown option '---kernel'"), "---kernel", "k");
	CFGT_ERR(CFGT_SAY("unknown option '-x'"), "-x");
}

Test(config, missing_values)
{
	CFGT_ERR(CFGT_SAY("option '--mem' needs a value"), "--mem");
	CFGT_ERR(CFGT_SAY("option '--kernel' needs a value", "'--mem'"), "--kernel", "--mem", "1G");
	CFGT_ERR(CFGT_SAY("option '-m' needs a value"), "-smp", "2", "-m");
	CFGT_ERR(CFGT_SAY("option '--cpu-affinity' needs a value"), "--cpu-affinity");
	CFGT_ERR(CFGT_SAY("option '-append' needs a value"), "-append");
	CFGT_ERR(CFGT_SAY("--kernel", "empty path"), "--kernel=");
	CFGT_ERR(CFGT_SAY("--initrd", "empty path"), "--initrd", "");
	CFGT_ERR(CFGT_SAY("--name", "empty name"), "--name=");
}

Test(config, flags_take_no_value)
{
	CFGT_ERR(CFGT_SAY("option '--ksm' takes no value"), "--ksm=1");
	CFGT_ERR(CFGT_SAY("option '-nographic' takes no value"), "-nographic=yes");
}

Test(config, bad_mem)
{
	CFGT_ERR(CFGT_SAY("invalid --mem '0'", "2M to 1T"), "--mem", "0");
	CFGT_ERR(CFGT_SAY("invalid --mem '1K'", "2M to 1T"), "--mem", "1K");
	CFGT_ERR(CFGT_SAY("invalid --mem '2047K'"), "--mem", "2047K");
	CFGT_ERR(CFGT_SAY("invalid --mem '3000000T'", "2M to 1T"), "--mem", "3000000T");
	CFGT_ERR(CFGT_SAY("invalid --mem '99999999T'"), "--mem", "99999999T");
	CFGT_ERR(CFGT_SAY("invalid --mem '1025G'"), "--mem", "1025G");
	CFGT_ERR(CFGT_SAY("invalid --mem '1000001K'", "multiple of 4K"), "--mem", "1000001K");
	CFGT_ERR(CFGT_SAY("invalid --mem '2050K'", "multiple of 4K"), "--mem", "2050K");
	CFGT_ERR(CFGT_SAY("invalid --mem 'abc'", "512M"), "--mem", "abc");
	CFGT_ERR(CFGT_SAY("invalid --mem '1.5G'"), "--mem", "1.5G");
	CFGT_ERR(CFGT_SAY("invalid --mem ''"), "--mem=");
	CFGT_ERR(CFGT_SAY("option '--mem' needs a value"), "--mem", "-1");
	CFGT_ERR(CFGT_SAY("invalid -m '0'"), "-m", "0");
	CFGT_ERR(CFGT_SAY("invalid -m '1G,slots=2'", "'slots'"), "-m", "1G,slots=2");
	CFGT_ERR(CFGT_SAY("invalid -m 'size=1G,maxmem=4G'", "'maxmem'"), "-m", "size=1G,maxmem=4G");
	CFGT_ERR(CFGT_SAY("invalid -m 'size='"), "-m", "size=");
}

Test(config, bad_cpus)
{
	CFGT_ERR(CFGT_SAY("invalid --cpus '0': must be 1 to 64"), "--cpus", "0");
	CFGT_ERR(CFGT_SAY("invalid --cpus '65': must be 1 to 64"), "--cpus", "65");
	CFGT_ERR(CFGT_SAY("invalid --cpus '1000': must be 1 to 64"), "--cpus", "1000");
	CFGT_ERR(CFGT_SAY("invalid --cpus 'abc': must be 1 to 64"), "--cpus", "abc");
	CFGT_ERR(CFGT_SAY("invalid --cpus '2x'"), "--cpus", "2x");
	CFGT_ERR(CFGT_SAY("invalid --cpus ''"), "--cpus=");
	CFGT_ERR(CFGT_SAY("invalid --cpus '99999999999999999999'"), "--cpus",
		 "99999999999999999999");
	CFGT_ERR(CFGT_SAY("invalid --cpus '-1'"), "--cpus=-1");
}

Test(config, bad_smp)
{
	CFGT_ERR(CFGT_SAY("invalid -smp 'cpus=2,sockets=3'", "(3)", "2 CPUs"), "-smp",
		 "cpus=2,sockets=3");
	CFGT_ERR(CFGT_SAY("invalid -smp '4,sockets=2,cores=2,threads=2'", "(8)"), "-smp",
		 "4,sockets=2,cores=2,threads=2");
	CFGT_ERR(CFGT_SAY("invalid -smp '2,maxcpus=4'", "maxcpus"), "-smp", "2,maxcpus=4");
	CFGT_ERR(CFGT_SAY("invalid -smp '2,dies=1'", "'dies'", "unknown key"), "-smp", "2,dies=1");
	CFGT_ERR(CFGT_SAY("invalid -smp '0'", "1 to 64"), "-smp", "0");
	CFGT_ERR(CFGT_SAY("invalid -smp 'cpus=65'", "1 to 64"), "-smp", "cpus=65");
	CFGT_ERR(CFGT_SAY("invalid -smp 'sockets=8,cores=16'", "128 CPUs"), "-smp",
		 "sockets=8,cores=16");
	CFGT_ERR(CFGT_SAY("invalid -smp '2,4'", "'4'"), "-smp", "2,4");
	CFGT_ERR(CFGT_SAY("invalid -smp ''"), "-smp=");
	CFGT_ERR(CFGT_SAY("invalid -smp '2,'", "empty item"), "-smp", "2,");
	CFGT_ERR(CFGT_SAY("invalid -smp '2,,cores=2'", "empty item"), "-smp", "2,,cores=2");
	CFGT_ERR(CFGT_SAY("invalid -smp 'cores=x'"), "-smp", "cores=x");
	CFGT_ERR(CFGT_SAY("invalid --smp 'cpus=abc'"), "--smp", "cpus=abc");
}

Test(config, bad_cpu_affinity)
{
	static const char *const bad_forms[] = {"0",	"=1",	 "0=",	 "a=1",	 "0=b", "0=1,",
						",0=1", "0=1=2", "0=-1", " 0=1", "0:1", "0=1;1=2"};

	for (size_t i = 0; i < sizeof(bad_forms) / sizeof(bad_forms[0]); i++) {
		int r = CFGT_PARSE("--cpus", "2", "--cpu-affinity", bad_forms[i]);
		cr_assert_eq(r, -EINVAL, "'%s' accepted", bad_forms[i]);
		cr_assert_not_null(strstr(cfgt_err.msg, "invalid --cpu-affinity"), "%s",
				   cfgt_err.msg);
		cr_assert_not_null(strstr(cfgt_err.msg, "VCPU=HOSTCPU"), "%s", cfgt_err.msg);
	}
	CFGT_ERR(CFGT_SAY("invalid --cpu-affinity", "vCPU 0 is pinned twice"), "--cpus", "2",
		 "--cpu-affinity", "0=1,0=2");
	CFGT_ERR(CFGT_SAY("vCPU 1 is pinned twice"), "--cpus", "2", "--cpu-affinity", "1=1",
		 "--cpu-affinity", "1=0");
	CFGT_ERR(CFGT_SAY("invalid --cpu-affinity '0=1024'", "host CPU 1024"), "--cpu-affinity",
		 "0=1024");
	CFGT_ERR(CFGT_SAY("invalid --cpu-affinity '64=0'", "vCPU 64"), "--cpu-affinity", "64=0");
	CFGT_ERR(CFGT_SAY("--cpu-affinity", "vCPU 2", "only 2 vCPUs"), "--cpus", "2",
		 "--cpu-affinity", "0=0,2=1");
	CFGT_ERR(CFGT_SAY("--cpu-affinity", "vCPU 1", "only 1 vCPU"), "--cpu-affinity", "1=1");
	CFGT_ERR(CFGT_SAY("--cpu-affinity", "vCPU 3"), "--cpu-affinity", "3=0", "--cpus", "4",
		 "-smp", "2");
}

Test(config, bad_console_and_decompress)
{
	CFGT_ERR(CFGT_SAY("invalid --console 'bogus'", "stdio, mon:stdio, pty, null, none"),
		 "--console", "bogus");
	CFGT_ERR(CFGT_SAY("invalid --console 'file:'"), "--console", "file:");
	CFGT_ERR(CFGT_SAY("invalid -serial 'mon:pty'", "only with stdio"), "-serial", "mon:pty");
	CFGT_ERR(CFGT_SAY("invalid --boot-decompress 'bogus'", "auto, host or guest"),
		 "--boot-decompress", "bogus");
}

Test(config, qemu_noops_only_for_kvm_and_host)
{
	CFGT_ERR(CFGT_SAY("invalid -cpu 'qemu64'"), "-cpu", "qemu64");
	CFGT_ERR(CFGT_SAY("invalid -cpu 'host,+x2apic'"), "-cpu", "host,+x2apic");
	CFGT_ERR(CFGT_SAY("invalid -accel 'tcg'"), "-accel", "tcg");
}

Test(config, stray_positional)
{
	CFGT_ERR(CFGT_SAY("unexpected argument 'bzImage'"), "bzImage");
	CFGT_ERR(CFGT_SAY("unexpected argument 'extra'"), "--kernel", "k", "extra");
	CFGT_ERR(CFGT_SAY("unexpected argument '--'"), "--");
	CFGT_ERR(CFGT_SAY("unexpected argument '-'"), "-");
}

Test(config, message_stays_one_line)
{
	CFGT_ERR(CFGT_SAY("invalid --console"), "--console", "a\nb");
	CFGT_ERR(CFGT_SAY("invalid --name"), "--name", "a\nb");
}

Test(config, errors_tolerate_null_errbuf)
{
	const char *args[] = {"--frobnicate"};

	cr_assert_eq(config_parse_run(&cfgt_cfg, 1, (char **)args, NULL), -EINVAL);
}

Test(config, usage_lists_every_option)
{
	static const char *const names[] = {"--kernel",
					    "--initrd",
					    "--append",
					    "--cmdline",
					    "--mem",
					    "--cpus",
					    "--console",
					    "--name",
					    "--hugepages",
					    "--mem-prealloc",
					    "--ksm",
					    "--cpu-affinity",
					    "--boot-decompress",
					    "-v, --verbose",
					    "-q, --quiet",
					    "-h, --help",
					    "-kernel",
					    "-initrd",
					    "-append",
					    "-m SIZE",
					    "-smp",
					    "-nographic",
					    "-serial",
					    "-no-reboot",
					    "-name",
					    "-enable-kvm",
					    "-cpu host",
					    "-accel kvm",
					    "256M",
					    "default: 1",
					    "default: stdio",
					    "default: auto",
					    "default: kvmini"};
	const char *u = config_usage();

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		cr_assert_not_null(strstr(u, names[i]), "usage lacks '%s'", names[i]);
	for (const char *line = u; *line;) {
		const char *nl = strchr(line, '\n');
		cr_assert_not_null(nl, "usage ends with a newline");
		cr_assert_leq(nl - line, 100, "usage line too long: %.*s", (int)(nl - line), line);
		line = nl + 1;
	}
}

Test(config, serial_ports_in_order)
{
	CFGT_PARSE(NULL);
	cr_assert_eq(cfgt_cfg.nserials, 1, "one port by default");
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_STDIO);
	cr_assert_not(cfgt_cfg.serial[0].mux);

	CFGT_OK("-serial", "file:/a", "-serial", "stdio", "--console", "pty", "-serial", "null");
	cr_assert_eq(cfgt_cfg.nserials, 4);
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_FILE);
	cr_assert_str_eq(cfgt_cfg.serial[0].path, "/a");
	cr_assert_str_eq(cfgt_cfg.serial[0].id, "serial0");
	cr_assert_eq(cfgt_cfg.serial[1].backend, CHARDEV_STDIO);
	cr_assert_eq(cfgt_cfg.serial[2].backend, CHARDEV_PTY);
	cr_assert_eq(cfgt_cfg.serial[3].backend, CHARDEV_NULL);
	cr_assert_str_eq(cfgt_cfg.serial[3].id, "serial3");

	CFGT_OK("-serial", "none", "-serial", "mon:stdio");
	cr_assert_eq(cfgt_cfg.nserials, 2);
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_NONE);
	cr_assert_eq(cfgt_cfg.serial[1].backend, CHARDEV_STDIO);
	cr_assert(cfgt_cfg.serial[1].mux);

	CFGT_ERR(CFGT_SAY("too many -serial", "4 serial ports"), "-serial", "null", "-serial",
		 "null", "-serial", "null", "-serial", "null", "-serial", "null");
	CFGT_ERR(CFGT_SAY("stdio is used by two serial ports"), "-serial", "stdio", "-serial",
		 "mon:stdio");
}

Test(config, serial_unix_sockets)
{
	CFGT_OK("-serial", "unix:/tmp/s.sock,server,nowait");
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_UNIX);
	cr_assert_str_eq(cfgt_cfg.serial[0].path, "/tmp/s.sock");
	cr_assert(cfgt_cfg.serial[0].server);
	cr_assert_not(cfgt_cfg.serial[0].wait);

	CFGT_OK("-serial", "unix:/tmp/s.sock,server");
	cr_assert(cfgt_cfg.serial[0].server);
	cr_assert(cfgt_cfg.serial[0].wait, "a server waits for its client unless told not to");

	CFGT_OK("-serial", "unix:/tmp/s.sock,server=on,wait=off");
	cr_assert(cfgt_cfg.serial[0].server && !cfgt_cfg.serial[0].wait);

	CFGT_OK("-serial", "unix:/tmp/c.sock");
	cr_assert_not(cfgt_cfg.serial[0].server);
	cr_assert_str_eq(cfgt_cfg.serial[0].path, "/tmp/c.sock");

	CFGT_ERR(CFGT_SAY("invalid -serial 'unix:/x,bogus'", "server"), "-serial", "unix:/x,bogus");
	CFGT_ERR(CFGT_SAY("invalid -serial 'unix:'"), "-serial", "unix:");
	char longpath[200] = "unix:/";
	memset(longpath + 6, 'a', 150);
	CFGT_ERR(CFGT_SAY("too long"), "-serial", longpath);
	CFGT_ERR(CFGT_SAY("chardev:c9", "no -chardev with id=c9"), "-serial", "chardev:c9");
}
