#include <criterion/criterion.h>

#include <errno.h>
#include <string.h>

#include "config.h"

static struct vm_config cfgt_cfg;
static struct errbuf cfgt_err;
static bool cfgt_parsed; /* cfgt_cfg holds a successful parse, to be freed */

static int cfgt_parse_list(const char **args)
{
	int n = 0, r;

	while (args[n])
		n++;
	memset(&cfgt_err, 0, sizeof(cfgt_err));
	if (cfgt_parsed)
		config_free(&cfgt_cfg);
	/* config_parse_run must not depend on what was in cfg before. */
	memset(&cfgt_cfg, 0x5a, sizeof(cfgt_cfg));
	r = config_parse_run(&cfgt_cfg, n, (char **)args, &cfgt_err);
	cfgt_parsed = r == 0;
	return r;
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
	    {"1.5G", 3ull << 29},     {"2.5M", 5ull << 19},
	    {"0.75GiB", 3ull << 28},
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

	static const char *const invalid[] = {"",   "M",     "-1",  "+1",   " 1",   "1 ",    "1.G",
					      "1X", "1GiB ", "1Gi", "1GBB", "0x10", "1KiBb", "G1"};
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++)
		cr_assert_eq(config_parse_size(invalid[i], &v), -EINVAL, "'%s'", invalid[i]);

	/* Fractions, as QEMU takes them; a fraction of a byte is dropped. */
	cr_assert_eq(config_parse_size("1.5G", &v), 0);
	cr_assert_eq(v, 3ull << 29);
	cr_assert_eq(config_parse_size("0.5k", &v), 0);
	cr_assert_eq(v, 512);
	cr_assert_eq(config_parse_size("2.25", &v), 0, "a bare number is MiB, fraction or not");
	cr_assert_eq(v, 9ull << 18);
	cr_assert_eq(config_parse_size("1.0000000000000000000000001K", &v), 0);
	cr_assert_eq(v, 1024);
	cr_assert_eq(config_parse_size("0.3K", &v), 0);
	cr_assert_eq(v, 307, "307.2 bytes: the fraction of a byte goes");
	cr_assert_eq(config_parse_size("1.99999999999999999999T", &v), 0);
	cr_assert_lt(v, 2ull << 40);
	cr_assert_gt(v, (2ull << 40) - 1000);
	cr_assert_eq(config_parse_size("16777215.999T", &v), 0);
	cr_assert_eq(config_parse_size("16777216.5T", &v), -ERANGE);
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
	CFGT_ERR(CFGT_SAY("unknown option '-hda'", "does not support it yet", "use --disk PATH"),
		 "-hda", "disk.img");
	CFGT_ERR(CFGT_SAY("invalid -nic 'user'", "only network backend is tap"), "-nic", "user");
	CFGT_ERR(CFGT_SAY("unknown option '-boot'", "without firmware"), "-boot", "c");
	CFGT_ERR(CFGT_SAY("unknown option '--frobnicate'"), "--frobnicate");
	CFGT_ERR(CFGT_SAY("unknown option '--frobnicate'"), "--mem", "1G", "--frobnicate=3");
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
	CFGT_ERR(CFGT_SAY("invalid --mem '1.G'", "expected a size"), "--mem", "1.G");
	CFGT_ERR(CFGT_SAY("invalid --mem '.5G'", "expected a size"), "--mem", ".5G");
	CFGT_ERR(CFGT_SAY("invalid --mem '1.5.1G'", "expected a size"), "--mem", "1.5.1G");
	CFGT_ERR(CFGT_SAY("invalid -m '0.1G'", "multiple of 4K"), "-m", "0.1G");
	CFGT_ERR(CFGT_SAY("invalid -m '1.5'", "2M to 1T"), "-m", "1.5");
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
	CFGT_OK("-accel", "kvm,kernel-irqchip=on");
	CFGT_OK("-accel", "accel=kvm");
	CFGT_ERR(CFGT_SAY("invalid -accel 'kvm,kernel-irqchip=off'", "in-kernel irqchip"), "-accel",
		 "kvm,kernel-irqchip=off");
	CFGT_ERR(CFGT_SAY("-accel 'kvm,dirty-ring-size=4096'", "unknown key 'dirty-ring-size'"),
		 "-accel", "kvm,dirty-ring-size=4096");
	CFGT_ERR(CFGT_SAY("-accel", "no accel given"), "-accel", "thread=single");
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
					    "default: kvmini",
					    "-nodefaults",
					    "-no-reboot, --no-reboot",
					    "status 0 instead of",
					    "  -S  ",
					    "-version",
					    "-device isa-debug-exit[,iobase=PORT][,iosize=N]",
					    "-machine, -M [type=]pc|q35|microvm[,accel=kvm]",
					    "one\n                          machine",
					    "-monitor none",
					    "-display none",
					    "-no-user-config",
					    "debug-threads",
					    "1.5G",
					    "',,'"};
	const char *u = config_usage();

	cr_assert_null(strstr(u, "always exits when the guest resets"), "reset reboots now");

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

/* ---- QEMU's keyed syntax ---- */

static struct keyed_opts kt_opts;
static struct errbuf kt_err;

static int kt_parse(const char *option, const char *s)
{
	memset(&kt_err, 0, sizeof(kt_err));
	return keyed_parse(option, s, &kt_opts, &kt_err);
}

/* Every keyed error is -EINVAL, one line, naming the option, the value and the problem. */
#define KT_ERR(option, s, needle)                                                                 \
	do {                                                                                      \
		int r_ = kt_parse(option, s);                                                     \
		cr_assert_eq(r_, -EINVAL, "'%s': expected -EINVAL, got %d", s, r_);               \
		cr_assert_null(strchr(kt_err.msg, '\n'), "two lines: %s", kt_err.msg);            \
		cr_assert_not_null(strstr(kt_err.msg, "-" option), "%s", kt_err.msg);             \
		cr_assert_not_null(strstr(kt_err.msg, needle), "\"%s\" lacks \"%s\"", kt_err.msg, \
				   needle);                                                       \
		cr_assert_null(kt_opts.spec, "failed parse left data behind");                    \
	} while (0)

Test(keyed, type_id_and_keys)
{
	cr_assert_eq(kt_parse("device", "virtio-blk-pci,drive=d0,id=blk0,bootindex=1"), 0, "%s",
		     kt_err.msg);
	cr_assert_str_eq(kt_opts.option, "device");
	cr_assert_str_eq(kt_opts.type, "virtio-blk-pci");
	cr_assert_str_eq(kt_opts.id, "blk0");
	cr_assert_eq(kt_opts.nkv, 2);
	cr_assert_str_eq(keyed_get(&kt_opts, "drive"), "d0");
	cr_assert_str_eq(keyed_get(&kt_opts, "bootindex"), "1");
	cr_assert_null(keyed_get(&kt_opts, "id"), "id is not a key");
	cr_assert_null(keyed_get(&kt_opts, "nothere"));
	cr_assert_eq(keyed_check_used(&kt_opts, NULL, &kt_err), 0);
	keyed_opts_free(&kt_opts);
	cr_assert_null(kt_opts.type);
}

Test(keyed, implied_key_spelled_out)
{
	cr_assert_eq(kt_parse("device", "driver=isa-debug-exit,iobase=0xf4"), 0);
	cr_assert_str_eq(kt_opts.type, "isa-debug-exit");
	keyed_opts_free(&kt_opts);
	cr_assert_eq(kt_parse("netdev", "type=tap,id=n0"), 0);
	cr_assert_str_eq(kt_opts.type, "tap");
	keyed_opts_free(&kt_opts);
	cr_assert_eq(kt_parse("chardev", "socket,id=c0,path=/x,server,nowait"), 0);
	cr_assert_str_eq(kt_opts.type, "socket");
	cr_assert_str_eq(kt_opts.id, "c0");
	cr_assert_str_eq(keyed_get(&kt_opts, "path"), "/x");
	keyed_opts_free(&kt_opts);
	cr_assert_eq(kt_parse("mon", "chardev=c0,mode=readline"), 0);
	cr_assert_str_eq(kt_opts.type, "c0");
	keyed_opts_free(&kt_opts);
	cr_assert_eq(kt_parse("object", "rng-random,id=rng0,filename=/dev/urandom"), 0);
	cr_assert_str_eq(kt_opts.type, "rng-random");
	keyed_opts_free(&kt_opts);
}

Test(keyed, comma_escape)
{
	cr_assert_eq(kt_parse("drive", "file=a,,b.img,if=none,id=d0"), 0, "%s", kt_err.msg);
	cr_assert_null(kt_opts.type, "-drive has no type");
	cr_assert_str_eq(keyed_get(&kt_opts, "file"), "a,b.img");
	cr_assert_str_eq(keyed_get(&kt_opts, "if"), "none");
	keyed_opts_free(&kt_opts);
	/* ",,," is an escaped comma then a separator. */
	cr_assert_eq(kt_parse("drive", "file=x,,,,,format=raw"), 0, "%s", kt_err.msg);
	cr_assert_str_eq(keyed_get(&kt_opts, "file"), "x,,");
	cr_assert_str_eq(keyed_get(&kt_opts, "format"), "raw");
	keyed_opts_free(&kt_opts);
	cr_assert_eq(kt_parse("device", "a,,b,x=1"), 0);
	cr_assert_str_eq(kt_opts.type, "a,b");
	keyed_opts_free(&kt_opts);
	cr_assert_eq(kt_parse("device", "x,,"), 0);
	cr_assert_str_eq(kt_opts.type, "x,");
	keyed_opts_free(&kt_opts);
}

Test(keyed, bare_booleans)
{
	bool b;

	cr_assert_eq(kt_parse("chardev", "socket,id=c0,server,nowait,telnet=off"), 0);
	cr_assert_str_eq(keyed_get(&kt_opts, "server"), "on");
	cr_assert_str_eq(keyed_get(&kt_opts, "wait"), "off", "nowait reads as wait=off");
	cr_assert_eq(keyed_get_bool(&kt_opts, "server", false, &b, &kt_err), 0);
	cr_assert(b);
	cr_assert_eq(keyed_get_bool(&kt_opts, "wait", true, &b, &kt_err), 0);
	cr_assert(!b);
	cr_assert_eq(keyed_get_bool(&kt_opts, "telnet", true, &b, &kt_err), 0);
	cr_assert(!b);
	cr_assert_eq(keyed_get_bool(&kt_opts, "absent", true, &b, &kt_err), 0);
	cr_assert(b, "absent key gives the default");
	keyed_opts_free(&kt_opts);
	/* -drive has no type, so its first bare item is a boolean too. */
	cr_assert_eq(kt_parse("drive", "readonly,file=x"), 0);
	cr_assert_str_eq(keyed_get(&kt_opts, "readonly"), "on");
	keyed_opts_free(&kt_opts);
}

Test(keyed, bool_spellings)
{
	const char *on[] = {"on", "yes", "true"}, *off[] = {"off", "no", "false"};
	bool b;

	for (int i = 0; i < 3; i++) {
		cr_assert_eq(config_parse_bool(on[i], &b), 0);
		cr_assert(b, "%s", on[i]);
		cr_assert_eq(config_parse_bool(off[i], &b), 0);
		cr_assert(!b, "%s", off[i]);
	}
	cr_assert_eq(config_parse_bool("1", &b), -EINVAL);
	cr_assert_eq(config_parse_bool("ON ", &b), -EINVAL);
	cr_assert_eq(config_parse_bool("", &b), -EINVAL);
	cr_assert_eq(kt_parse("chardev", "socket,id=c0,server=maybe"), 0);
	cr_assert_eq(keyed_get_bool(&kt_opts, "server", false, &b, &kt_err), -EINVAL);
	cr_assert_not_null(strstr(kt_err.msg, "server='maybe'"), "%s", kt_err.msg);
	cr_assert_not_null(strstr(kt_err.msg, "-chardev"), "%s", kt_err.msg);
	keyed_opts_free(&kt_opts);
}

Test(keyed, numbers)
{
	uint64_t v;

	cr_assert_eq(kt_parse("device", "x,a=0xf4,b=244,c=010,d=zz,e=0x,f=70000"), 0);
	cr_assert_eq(keyed_get_u64(&kt_opts, "a", 0, 0xffff, &v, &kt_err), 0);
	cr_assert_eq(v, 0xf4);
	cr_assert_eq(keyed_get_u64(&kt_opts, "b", 0, 0xffff, &v, &kt_err), 0);
	cr_assert_eq(v, 244);
	cr_assert_eq(keyed_get_u64(&kt_opts, "c", 0, 0xffff, &v, &kt_err), 0);
	cr_assert_eq(v, 8, "leading 0 is octal, as QEMU");
	cr_assert_eq(keyed_get_u64(&kt_opts, "missing", 77, 0xffff, &v, &kt_err), 0);
	cr_assert_eq(v, 77);
	cr_assert_eq(keyed_get_u64(&kt_opts, "d", 0, 0xffff, &v, &kt_err), -EINVAL);
	cr_assert_not_null(strstr(kt_err.msg, "d='zz' is not a number"), "%s", kt_err.msg);
	cr_assert_eq(keyed_get_u64(&kt_opts, "e", 0, 0xffff, &v, &kt_err), -EINVAL);
	cr_assert_eq(keyed_get_u64(&kt_opts, "f", 0, 0xffff, &v, &kt_err), -EINVAL);
	cr_assert_not_null(strstr(kt_err.msg, "f=70000 is above 65535"), "%s", kt_err.msg);
	keyed_opts_free(&kt_opts);
}

Test(keyed, unknown_keys_are_named)
{
	cr_assert_eq(kt_parse("device", "isa-debug-exit,iobase=0xf4,colour=red"), 0);
	(void)keyed_get(&kt_opts, "iobase");
	cr_assert_eq(keyed_check_used(&kt_opts, "iobase, iosize", &kt_err), -EINVAL);
	cr_assert_not_null(strstr(kt_err.msg, "unknown key 'colour' for isa-debug-exit"), "%s",
			   kt_err.msg);
	cr_assert_not_null(strstr(kt_err.msg, "iobase, iosize"), "%s", kt_err.msg);
	cr_assert_not_null(strstr(kt_err.msg, "-device 'isa-debug-exit,iobase=0xf4,colour=red'"),
			   "%s", kt_err.msg);
	(void)keyed_get(&kt_opts, "colour");
	cr_assert_eq(keyed_check_used(&kt_opts, NULL, &kt_err), 0);
	keyed_opts_free(&kt_opts);
	/* A negated bare key is named as typed. */
	cr_assert_eq(kt_parse("chardev", "stdio,id=c0,nosignal,bogus"), 0);
	(void)keyed_get(&kt_opts, "bogus");
	cr_assert_eq(keyed_check_used(&kt_opts, NULL, &kt_err), -EINVAL);
	cr_assert_not_null(strstr(kt_err.msg, "'nosignal'"), "%s", kt_err.msg);
	keyed_opts_free(&kt_opts);
}

Test(keyed, errors)
{
	KT_ERR("device", "virtio-blk-pci,drive=d0,drive=d1", "key 'drive' given twice");
	KT_ERR("chardev", "socket,id=c0,server,server=off", "key 'server' given twice");
	KT_ERR("chardev", "socket,id=c0,wait,nowait", "key 'wait' given twice");
	KT_ERR("device", "x,id=a,id=b", "key 'id' given twice");
	KT_ERR("device", "x,driver=y", "key 'driver' given twice");
	KT_ERR("device", "x,=1", "empty key");
	KT_ERR("device", ",x=1", "empty item");
	KT_ERR("device", ",", "empty item");
	KT_ERR("device", "", "no driver given");
	KT_ERR("device", "id=d0", "no driver given");
	KT_ERR("netdev", "tap", "needs an id=");
	KT_ERR("chardev", "stdio", "needs an id=");
	KT_ERR("object", "rng-random,filename=/dev/urandom", "needs an id=");
	KT_ERR("netdev", "user,id=1n", "id '1n' must start with a letter");
	KT_ERR("netdev", "user,id=n/0", "id 'n/0'");
	KT_ERR("netdev", "user,id=", "id ''");
	KT_ERR("device", "x,a b=1", "invalid key 'a b'");
	KT_ERR("device", "x,a,,b", "invalid key 'a,,b'");
}

Test(keyed, trailing_comma_as_qemu)
{
	cr_assert_eq(kt_parse("device", "isa-debug-exit,iobase=0xf4,"), 0, "%s", kt_err.msg);
	cr_assert_eq(kt_opts.nkv, 1);
	cr_assert_str_eq(keyed_get(&kt_opts, "iobase"), "0xf4");
	keyed_opts_free(&kt_opts);
}

Test(keyed, message_stays_one_line)
{
	KT_ERR("device", "x,a\nb=1", "invalid key");
	cr_assert_null(strchr(kt_err.msg, '\n'));
}

Test(keyed, list_keeps_order_and_refuses_duplicate_ids)
{
	struct keyed_list l = {0};
	struct keyed_opts *o;

	cr_assert_eq(keyed_list_add(&l, "netdev", "tap,id=n0,ifname=tap0", &o, &kt_err), 0);
	cr_assert_str_eq(o->type, "tap");
	cr_assert_eq(keyed_list_add(&l, "netdev", "user,id=n1", NULL, &kt_err), 0);
	cr_assert_eq(l.n, 2);
	cr_assert_str_eq(l.items[0].id, "n0");
	cr_assert_str_eq(l.items[1].id, "n1");
	cr_assert_eq(keyed_list_find(&l, "n1"), &l.items[1]);
	cr_assert_null(keyed_list_find(&l, "n2"));
	cr_assert_eq(keyed_list_add(&l, "netdev", "user,id=n0", NULL, &kt_err), -EINVAL);
	cr_assert_not_null(strstr(kt_err.msg, "id 'n0' is already used by another -netdev"), "%s",
			   kt_err.msg);
	cr_assert_eq(l.n, 2);
	/* Items without an id never collide. */
	cr_assert_eq(keyed_list_add(&l, "device", "a", NULL, &kt_err), 0);
	cr_assert_eq(keyed_list_add(&l, "device", "a", NULL, &kt_err), 0);
	cr_assert_eq(l.n, 4);
	keyed_list_free(&l);
	cr_assert_eq(l.n, 0);
	cr_assert_null(l.items);
}

/* ---- keyed options on the command line ---- */

Test(config, keyed_lists_fill_in_order)
{
	struct vm_config c;
	struct errbuf e = {{0}};
	/* Parsed before the refusal of what no device reads yet, so the lists are checked
	 * through the parser the devices will call. */
	const char *args[] = {"-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-device",
			      "driver=isa-debug-exit", NULL};

	cr_assert_eq(config_parse_run(&c, 2, (char **)args, &e), 0, "%s", e.msg);
	cr_assert_eq(c.devices.n, 1);
	cr_assert_str_eq(c.devices.items[0].type, "isa-debug-exit");
	cr_assert_str_eq(c.devices.items[0].spec, "isa-debug-exit,iobase=0xf4,iosize=4");
	config_free(&c);
	cr_assert_eq(c.devices.n, 0);
	cr_assert_null(c.devices.items);
	/* Given twice it is an error, and the failed parse leaves nothing to free. */
	cr_assert_eq(config_parse_run(&c, 4, (char **)args, &e), -EINVAL);
	cr_assert_not_null(strstr(e.msg, "given twice"), "%s", e.msg);
	cr_assert_eq(c.devices.n, 0);
	cr_assert_null(c.devices.items);
}

Test(config, keyed_syntax_errors_name_the_option)
{
	CFGT_ERR(CFGT_SAY("-drive 'file=a,file=b'", "key 'file' given twice"), "-drive",
		 "file=a,file=b");
	CFGT_ERR(CFGT_SAY("-netdev 'tap'", "needs an id="), "-netdev", "tap");
	CFGT_ERR(CFGT_SAY("-netdev 'tap,id=n0'", "already used"), "-netdev", "user,id=n0",
		 "-netdev", "tap,id=n0");
	CFGT_ERR(CFGT_SAY("-chardev", "needs an id="), "--chardev", "stdio");
	CFGT_ERR(CFGT_SAY("-object", "empty key"), "-object", "rng-random,id=r,=x");
	CFGT_ERR(CFGT_SAY("-mon", "no chardev given"), "-mon", "mode=readline");
	CFGT_ERR(CFGT_SAY("-device", "no driver given"), "-device", "id=x");
	CFGT_ERR(CFGT_SAY("option '-device' needs a value"), "-device");
}

Test(config, keyed_options_not_read_yet_are_refused)
{
	CFGT_ERR(CFGT_SAY("-drive 'file=disk.img,if=ide'", "if=ide", "virtio and none"), "-drive",
		 "file=disk.img,if=ide");
	CFGT_ERR(CFGT_SAY("-netdev 'user,id=n0'", "only network backend is tap"), "-netdev",
		 "user,id=n0");
	CFGT_ERR(CFGT_SAY("-object 'memory-backend-ram,id=m0'", "no memory-backend-ram object"),
		 "-object", "memory-backend-ram,id=m0");
}

/* --rng and -device virtio-rng-pci land as one -device entry that virtio/attach.c reads;
 * QEMU's -object rng-random backend is accepted with its filename. */
Test(config, rng_spellings)
{
	CFGT_OK("--rng");
	cr_assert_eq(cfgt_cfg.devices.n, 1);
	cr_assert_str_eq(cfgt_cfg.devices.items[0].type, "virtio-rng");
	CFGT_OK("-object", "rng-random,id=r0,filename=/dev/urandom", "-device",
		"virtio-rng-pci,rng=r0");
	cr_assert_eq(cfgt_cfg.devices.n, 1);
	cr_assert_str_eq(cfgt_cfg.devices.items[0].type, "virtio-rng-pci");
	cr_assert_eq(cfgt_cfg.objects.n, 1);
	CFGT_OK("-object", "rng-builtin,id=r0", "-device", "virtio-rng-pci,rng=r0");
	CFGT_ERR(CFGT_SAY("-object 'rng-random,id=r0,size=4'", "size"), "-object",
		 "rng-random,id=r0,size=4");
}

Test(config, device_drivers_kvmini_lacks_are_named)
{
	CFGT_ERR(CFGT_SAY("-device 'virtio-blk-pci,drive=d0'", "no -drive has id 'd0'"), "-device",
		 "virtio-blk-pci,drive=d0");
	CFGT_ERR(CFGT_SAY("-device 'virtio-net-pci,netdev=n0'", "no -netdev with id 'n0'"),
		 "-device", "virtio-net-pci,netdev=n0");
	CFGT_ERR(CFGT_SAY("-device 'e1000'", "no e1000 device", "devices are isa-debug-exit",
			  "virtio-blk"),
		 "-device", "e1000");
	CFGT_ERR(CFGT_SAY("-device 'virtio-gpu-pci'", "no virtio-gpu-pci device", "virtio-net"),
		 "-device", "virtio-gpu-pci");
}

Test(config, isa_debug_exit)
{
	CFGT_OK(NULL);
	cr_assert_eq(cfgt_cfg.debug_exit_port, 0xf4, "kvmini's own default");
	cr_assert_eq(cfgt_cfg.debug_exit_size, 4);
	CFGT_OK("-device", "isa-debug-exit,iobase=0xf4,iosize=0x04");
	cr_assert_eq(cfgt_cfg.debug_exit_port, 0xf4);
	cr_assert_eq(cfgt_cfg.debug_exit_size, 4);
	CFGT_OK("-device", "isa-debug-exit,iobase=0x614,iosize=1");
	cr_assert_eq(cfgt_cfg.debug_exit_port, 0x614);
	cr_assert_eq(cfgt_cfg.debug_exit_size, 1);
	/* QEMU's defaults when the keys are left out. */
	CFGT_OK("-device", "isa-debug-exit");
	cr_assert_eq(cfgt_cfg.debug_exit_port, 0x501);
	cr_assert_eq(cfgt_cfg.debug_exit_size, 2);
	CFGT_OK("-device", "isa-debug-exit,id=dbg,iosize=8");
	cr_assert_eq(cfgt_cfg.debug_exit_port, 0x501);
	cr_assert_eq(cfgt_cfg.debug_exit_size, 8);
}

Test(config, bad_isa_debug_exit)
{
	CFGT_ERR(CFGT_SAY("-device 'isa-debug-exit,iobase=0xfff0,iosize=32'", "0xfff0..0x1000f",
			  "outside 0..0xffff"),
		 "-device", "isa-debug-exit,iobase=0xfff0,iosize=32");
	CFGT_ERR(CFGT_SAY("iobase=0x10000 is above 65535"), "-device",
		 "isa-debug-exit,iobase=0x10000");
	CFGT_ERR(CFGT_SAY("iosize must be at least 1"), "-device", "isa-debug-exit,iosize=0");
	CFGT_ERR(CFGT_SAY("iobase='port' is not a number"), "-device",
		 "isa-debug-exit,iobase=port");
	CFGT_ERR(CFGT_SAY("unknown key 'irq' for isa-debug-exit", "iobase, iosize"), "-device",
		 "isa-debug-exit,irq=5");
	CFGT_ERR(CFGT_SAY("one isa-debug-exit"), "-device", "isa-debug-exit", "-device",
		 "isa-debug-exit,iobase=0x610");
	CFGT_ERR(CFGT_SAY("-device 'isa-debug-exit,iobase=0x3f8'", "0x3f8..0x3f9",
			  "overlap the serial port ttyS0 at 0x3f8..0x3ff"),
		 "-device", "isa-debug-exit,iobase=0x3f8");
	CFGT_ERR(CFGT_SAY("0x5f0..0x60f", "ACPI PM1a registers"), "-device",
		 "isa-debug-exit,iobase=0x5f0,iosize=32");
	CFGT_ERR(CFGT_SAY("overlap the i8042 data port"), "-device",
		 "isa-debug-exit,iobase=0x5e,iosize=4");
	CFGT_OK("-device", "isa-debug-exit,iobase=0x5c,iosize=4");
	CFGT_OK("-device", "isa-debug-exit,iobase=0x606,iosize=2");
	CFGT_ERR(CFGT_SAY("-device help", "devices are isa-debug-exit", "virtio-rng"), "-device",
		 "help");
}

/* ---- the spellings QEMU tutorials use ---- */

Test(config, tutorial_noops)
{
	CFGT_OK("-display", "none", "-no-user-config", "-monitor", "none", "-nographic");
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_STDIO);
	cr_assert_eq(cfgt_cfg.monitor.backend, CHARDEV_NONE);
	CFGT_ERR(CFGT_SAY("invalid -display 'gtk'", "no display", "-display none"), "-display",
		 "gtk");
	CFGT_ERR(CFGT_SAY("invalid -display 'vnc=:0'"), "-display", "vnc=:0");
	CFGT_ERR(CFGT_SAY("option '-no-user-config' takes no value"), "-no-user-config=1");
}

Test(config, monitor)
{
	/* kvmini has one terminal: -monitor stdio shares it with the stdio serial port. */
	CFGT_OK("-monitor", "stdio");
	cr_assert(cfgt_cfg.serial[0].mux);
	CFGT_ERR(CFGT_SAY("-monitor 'stdio'", "-serial mon:stdio"), "-monitor", "stdio", "-serial",
		 "file:/x");
	CFGT_ERR(CFGT_SAY("invalid -monitor 'telnet::4444'", "none or stdio"), "-monitor",
		 "telnet::4444");
	CFGT_OK("-monitor", "stdio", "-monitor", "none");
	cr_assert_eq(cfgt_cfg.monitor.backend, CHARDEV_NONE, "the last -monitor wins");
}

Test(config, nodefaults_drops_the_default_serial_port)
{
	CFGT_OK("-nodefaults");
	cr_assert(cfgt_cfg.nodefaults);
	cr_assert_eq(cfgt_cfg.nserials, 0);
	/* Also with -nographic, as in QEMU: -nodefaults wins. */
	CFGT_OK("-nographic", "-nodefaults");
	cr_assert_eq(cfgt_cfg.nserials, 0);
	/* An explicit -serial keeps its port, before or after. */
	CFGT_OK("-nodefaults", "-serial", "stdio");
	cr_assert_eq(cfgt_cfg.nserials, 1);
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_STDIO);
	CFGT_OK("--console", "file:/tmp/x", "-nodefaults");
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_FILE);
	cr_assert_str_eq(cfgt_cfg.serial[0].path, "/tmp/x");
	CFGT_OK(NULL);
	cr_assert(!cfgt_cfg.nodefaults);
	cr_assert_eq(cfgt_cfg.nserials, 1);
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_STDIO);
}

Test(config, machine_spellings)
{
	static const char *const ok[] = {"q35",
					 "pc",
					 "microvm",
					 "accel=kvm",
					 "q35,accel=kvm",
					 "type=pc,accel=kvm:tcg",
					 "pc-q35-8.2",
					 "pc-i440fx-7.2,accel=kvm",
					 "microvm,kernel-irqchip=on",
					 "q35,usb=off,vmport=off,smm=off",
					 "q35,"};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		CFGT_OK("-machine", ok[i]);
		CFGT_OK("-M", ok[i]);
	}
	CFGT_OK("-M", "q35", "-M", "pc");
	/* mem-merge is QEMU's name for --ksm. */
	CFGT_OK("-machine", "q35,mem-merge=on");
	cr_assert(cfgt_cfg.ksm);
	CFGT_OK("--ksm", "-machine", "q35,mem-merge=off");
	cr_assert(!cfgt_cfg.ksm);
	CFGT_OK("--ksm", "-machine", "q35");
	cr_assert(cfgt_cfg.ksm, "no mem-merge leaves --ksm alone");
}

Test(config, bad_machine)
{
	CFGT_ERR(CFGT_SAY("invalid -M 'virt'", "one machine", "not virt"), "-M", "virt");
	CFGT_ERR(CFGT_SAY("invalid -machine 'q35,,'", "not q35,"), "-machine", "q35,,");
	CFGT_ERR(CFGT_SAY("invalid -machine 'accel=tcg'", "only runs on kvm"), "-machine",
		 "accel=tcg");
	CFGT_ERR(CFGT_SAY("kernel-irqchip=split", "in-kernel irqchip"), "-machine",
		 "q35,kernel-irqchip=split");
	CFGT_ERR(CFGT_SAY("usb=on", "no USB"), "-machine", "pc,usb=on");
	CFGT_ERR(CFGT_SAY("smm=on", "no system management mode"), "-M", "q35,smm");
	CFGT_ERR(CFGT_SAY("mem-merge='maybe'"), "-M", "q35,mem-merge=maybe");
	CFGT_ERR(CFGT_SAY("-machine 'q35,nvdimm=on'", "unknown key 'nvdimm'", "accel"), "-machine",
		 "q35,nvdimm=on");
	CFGT_ERR(CFGT_SAY("key 'accel' given twice"), "-machine", "accel=kvm,accel=kvm");
}

Test(config, name_forms)
{
	CFGT_OK("-name", "vm1");
	cr_assert_str_eq(cfgt_cfg.name, "vm1");
	CFGT_OK("-name", "guest=web,debug-threads=on");
	cr_assert_str_eq(cfgt_cfg.name, "web");
	CFGT_OK("-name", "db,debug-threads=off");
	cr_assert_str_eq(cfgt_cfg.name, "db");
	CFGT_OK("--name", "a,,b");
	cr_assert_str_eq(cfgt_cfg.name, "a,b", "',,' is a comma, as in QEMU");
	CFGT_OK("-name", "first", "-name", "second");
	cr_assert_str_eq(cfgt_cfg.name, "second");
	CFGT_ERR(CFGT_SAY("invalid -name 'guest='", "empty name"), "-name", "guest=");
	CFGT_ERR(CFGT_SAY("-name 'vm,process=qemu-vm'", "unknown key 'process'"), "-name",
		 "vm,process=qemu-vm");
	CFGT_ERR(CFGT_SAY("debug-threads='2'"), "-name", "vm,debug-threads=2");
	CFGT_ERR(CFGT_SAY("invalid -name 'a,b'", "unknown key 'b'"), "-name", "a,b");
}

Test(config, start_paused)
{
	CFGT_OK(NULL);
	cr_assert(!cfgt_cfg.start_paused);
	CFGT_OK("-S");
	cr_assert(cfgt_cfg.start_paused);
	CFGT_ERR(CFGT_SAY("unknown option '-s'", "gdb stub"), "-s");
}

Test(config, restore_and_incoming)
{
	CFGT_OK(NULL);
	cr_assert_null(cfgt_cfg.restore_path);
	CFGT_OK("--restore", "/tmp/a.snap");
	cr_assert_str_eq(cfgt_cfg.restore_path, "/tmp/a.snap");
	CFGT_OK("-incoming", "file:/tmp/b.snap");
	cr_assert_str_eq(cfgt_cfg.restore_path, "/tmp/b.snap");
	CFGT_ERR(CFGT_SAY("-incoming tcp:0:4444", "only file:PATH"), "-incoming", "tcp:0:4444");
	CFGT_ERR(CFGT_SAY("-incoming file:", "only file:PATH"), "-incoming", "file:");
	CFGT_OK("-incoming", "defer");
	cr_assert(cfgt_cfg.incoming_defer);
	cr_assert_null(cfgt_cfg.restore_path);
	CFGT_OK("-incoming", "defer", "-S");
	cr_assert(cfgt_cfg.incoming_defer && cfgt_cfg.start_paused);
	CFGT_ERR(CFGT_SAY("given twice"), "-incoming", "defer", "--restore", "/tmp/a");
	CFGT_ERR(CFGT_SAY("given twice"), "--restore", "/tmp/a", "-incoming", "file:/tmp/b");
	CFGT_ERR(CFGT_SAY("--restore needs a snapshot file"), "--restore=");
}

Test(config, snapshot_dir)
{
	CFGT_OK(NULL);
	cr_assert_null(cfgt_cfg.snapshot_dir);
	CFGT_OK("--snapshot-dir", "/var/snaps");
	cr_assert_str_eq(cfgt_cfg.snapshot_dir, "/var/snaps");
	CFGT_ERR(CFGT_SAY("--snapshot-dir needs a directory"), "--snapshot-dir=");
	CFGT_ERR(CFGT_SAY("needs a value"), "--snapshot-dir");
}

Test(config, version)
{
	cr_assert_eq(CFGT_PARSE("-version"), 2);
	cr_assert_eq(CFGT_PARSE("--version"), 2);
	cr_assert_eq(CFGT_PARSE("-m", "1G", "-version", "-kernel"), 2,
		     "as QEMU: the version, whatever follows");
	cr_assert_eq(CFGT_PARSE("-m", "x", "-version"), -EINVAL, "options before it are checked");
}

Test(config, no_reboot_spellings)
{
	CFGT_OK("-no-reboot");
	cr_assert(cfgt_cfg.no_reboot);
	CFGT_OK("--no-reboot");
	cr_assert(cfgt_cfg.no_reboot);
}

Test(config, chardev_serial_and_mon_map_onto_the_serial_ports)
{
	CFGT_OK("-chardev", "socket,id=c0,path=/tmp/k.sock,server=on,wait=off", "-serial",
		"chardev:c0");
	cr_assert_eq(cfgt_cfg.nserials, 1);
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_UNIX);
	cr_assert_str_eq(cfgt_cfg.serial[0].path, "/tmp/k.sock");
	cr_assert(cfgt_cfg.serial[0].server);
	cr_assert_not(cfgt_cfg.serial[0].wait);
	cr_assert_str_eq(cfgt_cfg.serial[0].id, "c0", "the label a pty line would print");

	/* The -chardev may come after the -serial that names it. */
	CFGT_OK("-serial", "chardev:c1", "-chardev", "socket,id=c1,path=/s,server");
	cr_assert(cfgt_cfg.serial[0].server && cfgt_cfg.serial[0].wait,
		  "a server waits unless wait=off");

	CFGT_OK("-chardev", "stdio,id=con,mux=on,signal=off", "-serial", "chardev:con", "-mon",
		"chardev=con,mode=readline");
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_STDIO);
	cr_assert(cfgt_cfg.serial[0].mux);

	CFGT_OK("-serial", "stdio", "-chardev", "file,id=f,path=/tmp/out", "-serial", "chardev:f",
		"-chardev", "pty,id=p", "-serial", "chardev:p", "-chardev", "null,id=n", "-serial",
		"chardev:n");
	cr_assert_eq(cfgt_cfg.nserials, 4);
	cr_assert_eq(cfgt_cfg.serial[1].backend, CHARDEV_FILE);
	cr_assert_str_eq(cfgt_cfg.serial[1].path, "/tmp/out");
	cr_assert_eq(cfgt_cfg.serial[2].backend, CHARDEV_PTY);
	cr_assert_eq(cfgt_cfg.serial[3].backend, CHARDEV_NULL);

	CFGT_ERR(CFGT_SAY("-chardev 'socket,id=s,host=localhost,port=4444'", "unix sockets"),
		 "-chardev", "socket,id=s,host=localhost,port=4444");
	CFGT_ERR(CFGT_SAY("-chardev 'vc,id=v'", "stdio, null, pty, file and socket"), "-chardev",
		 "vc,id=v");
	CFGT_ERR(CFGT_SAY("-chardev", "bogus"), "-chardev", "stdio,id=c0,bogus=1");
	CFGT_ERR(CFGT_SAY("file needs path="), "-chardev", "file,id=f");
	CFGT_ERR(CFGT_SAY("used by two serial ports"), "-chardev", "null,id=n", "-serial",
		 "chardev:n", "-serial", "chardev:n");
	CFGT_ERR(CFGT_SAY("-mon 'chardev=c0,mode=control'", "QMP"), "-chardev", "stdio,id=c0",
		 "-serial", "chardev:c0", "-mon", "chardev=c0,mode=control");
	CFGT_ERR(CFGT_SAY("-mon 'chardev=zz'", "shares the stdio serial port"), "-mon",
		 "chardev=zz");
	CFGT_ERR(CFGT_SAY("multiplexes the monitor only on stdio"), "-chardev", "pty,id=p,mux=on",
		 "-serial", "chardev:p");
}

Test(config, qmp_socket_spellings)
{
	CFGT_OK("-m", "64");
	cr_assert_eq(cfgt_cfg.qmp.backend, CHARDEV_NONE, "no QMP socket unless asked for");

	CFGT_OK("--qmp", "unix:/tmp/q.sock,server,wait=off");
	cr_assert_eq(cfgt_cfg.qmp.backend, CHARDEV_UNIX);
	cr_assert_str_eq(cfgt_cfg.qmp.path, "/tmp/q.sock");
	cr_assert(cfgt_cfg.qmp.server);
	cr_assert_not(cfgt_cfg.qmp.wait);

	CFGT_OK("-qmp", "unix:/tmp/q.sock,server,nowait");
	cr_assert_not(cfgt_cfg.qmp.wait);
	CFGT_OK("-qmp", "unix:/tmp/q.sock,server=on,wait=off");
	cr_assert(cfgt_cfg.qmp.server && !cfgt_cfg.qmp.wait);
	CFGT_OK("-qmp", "unix:/tmp/q.sock,server");
	cr_assert(cfgt_cfg.qmp.wait, "a server waits for its first client unless wait=off");
	CFGT_OK("--qmp", "unix:/tmp/q.sock");
	cr_assert(cfgt_cfg.qmp.server && !cfgt_cfg.qmp.wait,
		  "kvmini always listens; without server it does not wait");

	CFGT_OK("-chardev", "socket,id=m0,path=/tmp/m.sock,server=on,wait=off", "-mon",
		"chardev=m0,mode=control");
	cr_assert_eq(cfgt_cfg.qmp.backend, CHARDEV_UNIX);
	cr_assert_str_eq(cfgt_cfg.qmp.path, "/tmp/m.sock");
	cr_assert_not(cfgt_cfg.qmp.wait);
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_STDIO, "ttyS0 stays on stdio");

	CFGT_ERR(CFGT_SAY("-qmp 'tcp:localhost:4444'", "unix:PATH"), "-qmp", "tcp:localhost:4444");
	CFGT_ERR(CFGT_SAY("--qmp", "unix:"), "--qmp", "unix:/x,server,bogus");
	CFGT_ERR(CFGT_SAY("one QMP socket"), "--qmp", "unix:/a,server", "--qmp", "unix:/b,server");
	CFGT_ERR(CFGT_SAY("QMP needs a listening unix socket"), "-chardev", "socket,id=m0,path=/m",
		 "-mon", "chardev=m0,mode=control");
	CFGT_ERR(CFGT_SAY("mode must be readline or control"), "-chardev", "stdio,id=c0,mux=on",
		 "-serial", "chardev:c0", "-mon", "chardev=c0,mode=json");
}

/* --virtio-transport chooses the default transport; names that say -pci/-device keep
 * theirs (virtio/attach.c reads the suffix). */
Test(config, virtio_transport)
{
	CFGT_OK("--rng");
	cr_assert_not(cfgt_cfg.virtio_mmio, "pci is the default");
	CFGT_OK("--virtio-transport", "mmio", "--rng");
	cr_assert(cfgt_cfg.virtio_mmio);
	CFGT_OK("--virtio-transport", "mmio", "--virtio-transport", "pci");
	cr_assert_not(cfgt_cfg.virtio_mmio, "the last one wins");
	CFGT_OK("-device", "virtio-rng-device");
	cr_assert_str_eq(cfgt_cfg.devices.items[0].type, "virtio-rng-device");
	CFGT_ERR(CFGT_SAY("--virtio-transport", "'ccw'", "pci and mmio"), "--virtio-transport",
		 "ccw");
}

/* --console virtio is hvc0 on stdio in place of ttyS0, as one -chardev and one -device
 * entry, the path -device virtconsole takes too. */
Test(config, console_virtio)
{
	CFGT_OK("--console", "virtio");
	cr_assert_eq(cfgt_cfg.nserials, 0, "the default ttyS0 is replaced");
	cr_assert_eq(cfgt_cfg.devices.n, 1);
	cr_assert_str_eq(cfgt_cfg.devices.items[0].type, "virtio-console");
	cr_assert_eq(cfgt_cfg.chardevs.n, 1);
	cr_assert_str_eq(cfgt_cfg.chardevs.items[0].type, "stdio");
	struct chardev_cfg cc;
	struct errbuf e;
	cr_assert_eq(config_chardev_lookup(&cfgt_cfg, "virtcon0", &cc, &e), 0, "%s", e.msg);
	cr_assert_eq(cc.backend, CHARDEV_STDIO);
	/* A serial port may come after it, on another backend. */
	CFGT_OK("--console", "virtio", "--console", "file:/tmp/ttyS0.log");
	cr_assert_eq(cfgt_cfg.nserials, 1);
	cr_assert_eq(cfgt_cfg.serial[0].backend, CHARDEV_FILE);
	CFGT_ERR(CFGT_SAY("stdio", "serial port", "virtio console"), "--console", "virtio",
		 "--console", "stdio");
	CFGT_ERR(CFGT_SAY("one virtio console"), "--console", "virtio", "--console", "virtio");
}

Test(config, virtconsole_spellings)
{
	CFGT_OK("-chardev", "pty,id=c0", "-device", "virtio-serial-pci", "-device",
		"virtconsole,chardev=c0");
	cr_assert_eq(cfgt_cfg.devices.n, 1, "the bus leaves the list; the port stays");
	cr_assert_str_eq(cfgt_cfg.devices.items[0].type, "virtio-console-pci");
	CFGT_OK("-chardev", "null,id=c0", "-device", "virtio-serial-device", "-device",
		"virtconsole,chardev=c0,name=org.qemu.console.0");
	cr_assert_str_eq(cfgt_cfg.devices.items[0].type, "virtio-console-device");
	CFGT_OK("-chardev", "null,id=c0", "-device", "virtio-serial,max_ports=2", "-device",
		"virtconsole,chardev=c0");
	cr_assert_str_eq(cfgt_cfg.devices.items[0].type, "virtio-console");
	/* The bus alone is accepted (QEMU makes one with no ports). */
	CFGT_OK("-device", "virtio-serial-pci");
	cr_assert_eq(cfgt_cfg.devices.n, 0);
	CFGT_ERR(CFGT_SAY("virtconsole", "virtio-serial"), "-chardev", "null,id=c0", "-device",
		 "virtconsole,chardev=c0");
	CFGT_ERR(CFGT_SAY("no -chardev with id=c1"), "-device", "virtio-serial-pci", "-device",
		 "virtconsole,chardev=c1");
	CFGT_ERR(CFGT_SAY("needs chardev=ID"), "-device", "virtio-serial-pci", "-device",
		 "virtconsole");
	CFGT_ERR(CFGT_SAY("c0", "serial port and a virtconsole"), "-chardev", "null,id=c0",
		 "-serial", "chardev:c0", "-device", "virtio-serial-pci", "-device",
		 "virtconsole,chardev=c0");
	CFGT_ERR(CFGT_SAY("one virtio-serial bus"), "-device", "virtio-serial-pci", "-device",
		 "virtio-serial-device");
	CFGT_ERR(CFGT_SAY("virtio-serial-ccw"), "-device", "virtio-serial-ccw");
}

/* ---- disks: --disk, -drive, -device virtio-blk-pci, all into one form ---- */

/* The device entry i of the last parse and the -drive it names. */
static struct keyed_opts *blk_dev(unsigned i, struct keyed_opts **drive)
{
	cr_assert_lt(i, cfgt_cfg.devices.n);
	struct keyed_opts *d = &cfgt_cfg.devices.items[i];
	cr_assert(config_is_blk_driver(d->type), "%s", d->type);
	const char *id = keyed_get(d, "drive");
	cr_assert_not_null(id);
	*drive = keyed_list_find(&cfgt_cfg.drives, id);
	cr_assert_not_null(*drive, "no drive %s", id);
	return d;
}

Test(config, disk_option_forms)
{
	struct keyed_opts *dev, *drv;
	CFGT_OK("--disk", "/img/a.raw");
	dev = blk_dev(0, &drv);
	cr_assert_str_eq(keyed_get(drv, "file"), "/img/a.raw");
	cr_assert_str_eq(keyed_get(drv, "readonly"), "off");
	cr_assert_str_eq(keyed_get(drv, "if"), "none");
	cr_assert_null(keyed_get(drv, "cache"));
	cr_assert_str_eq(keyed_get(dev, "num-queues"), "1");
	cr_assert_str_eq(drv->id, "disk0", "a generated id, which is also the serial");

	CFGT_OK("--disk", "b,,c.img,ro,id=root,cache=none,queues=4", "--disk", "x.img");
	cr_assert_eq(cfgt_cfg.devices.n, 2);
	dev = blk_dev(0, &drv);
	cr_assert_str_eq(keyed_get(drv, "file"), "b,c.img", "a doubled comma is one comma");
	cr_assert_str_eq(keyed_get(drv, "readonly"), "on");
	cr_assert_str_eq(keyed_get(drv, "cache"), "none");
	cr_assert_str_eq(drv->id, "root");
	cr_assert_str_eq(keyed_get(dev, "num-queues"), "4");
	blk_dev(1, &drv);
	cr_assert_str_eq(drv->id, "disk0");
	cr_assert_str_eq(keyed_get(drv, "file"), "x.img");
}

Test(config, drive_if_virtio_becomes_a_device)
{
	struct keyed_opts *drv;
	CFGT_OK("-drive", "file=rootfs.ext4,format=raw,if=virtio,readonly=on,cache=none,id=r");
	cr_assert_eq(cfgt_cfg.devices.n, 1);
	blk_dev(0, &drv);
	cr_assert_str_eq(drv->id, "r");
	cr_assert_str_eq(keyed_get(drv, "readonly"), "on");
	/* Without if= (QEMU's default is IDE, which kvmini lacks) and without id=. */
	CFGT_OK("-drive", "file=a.img,format=raw", "-drive", "file=b.img,if=virtio,aio=io_uring");
	cr_assert_eq(cfgt_cfg.devices.n, 2);
	blk_dev(0, &drv);
	cr_assert_str_eq(keyed_get(drv, "file"), "a.img");
	cr_assert_str_eq(drv->id, "disk0");
	blk_dev(1, &drv);
	cr_assert_str_eq(drv->id, "disk1");
}

Test(config, drive_if_none_with_device)
{
	struct keyed_opts *dev, *drv;
	/* The -device may come before the -drive it names. */
	CFGT_OK("-device", "virtio-blk-pci,drive=hd,num-queues=2,serial=SER1", "-drive",
		"if=none,id=hd,file=disk.img,format=raw");
	cr_assert_eq(cfgt_cfg.devices.n, 1);
	dev = blk_dev(0, &drv);
	cr_assert_str_eq(drv->id, "hd");
	cr_assert_str_eq(keyed_get(dev, "serial"), "SER1");
	cr_assert_str_eq(keyed_get(dev, "num-queues"), "2");
	CFGT_OK("-drive", "if=none,id=hd,file=disk.img", "-device", "virtio-blk-device,drive=hd");
	cr_assert_eq(cfgt_cfg.devices.n, 1);
}

Test(config, disk_option_errors)
{
	CFGT_ERR(CFGT_SAY("--disk 'id=x'", "path comes first"), "--disk", "id=x");
	CFGT_ERR(CFGT_SAY("--disk 'a.img,cache=unsafe'", "cache='unsafe'", "none and writeback"),
		 "--disk", "a.img,cache=unsafe");
	CFGT_ERR(CFGT_SAY("queues=65", "above 64"), "--disk", "a.img,queues=65");
	CFGT_ERR(CFGT_SAY("queues must be at least 1"), "--disk", "a.img,queues=0");
	CFGT_ERR(CFGT_SAY("unknown key 'size'", "ro, id, cache, queues"), "--disk",
		 "a.img,size=1G");
	CFGT_ERR(CFGT_SAY("ro='maybe'", "on or off"), "--disk", "a.img,ro=maybe");
	CFGT_ERR(CFGT_SAY("id 'x' is already used"), "--disk", "a.img,id=x", "--disk",
		 "b.img,id=x");
	CFGT_ERR(CFGT_SAY("option '--disk' needs a value"), "--disk");
}

Test(config, drive_errors)
{
	CFGT_ERR(CFGT_SAY("-drive 'file=a.qcow2,format=qcow2'", "format=qcow2", "raw images only"),
		 "-drive", "file=a.qcow2,format=qcow2");
	CFGT_ERR(CFGT_SAY("needs file=PATH"), "-drive", "if=virtio,format=raw");
	CFGT_ERR(CFGT_SAY("if=scsi"), "-drive", "file=a,if=scsi");
	CFGT_ERR(CFGT_SAY("cache=directsync"), "-drive", "file=a,cache=directsync");
	CFGT_ERR(CFGT_SAY("aio=posix"), "-drive", "file=a,aio=posix");
	CFGT_ERR(CFGT_SAY("media=cdrom"), "-drive", "file=a,media=cdrom");
	CFGT_ERR(CFGT_SAY("unknown key 'snapshot'"), "-drive", "file=a,snapshot=on");
	CFGT_ERR(CFGT_SAY("readonly='2'"), "-drive", "file=a,readonly=2");
	CFGT_ERR(CFGT_SAY("-drive 'if=none,id=d,file=a'", "no -device virtio-blk-pci,drive=d"),
		 "-drive", "if=none,id=d,file=a");
	CFGT_ERR(CFGT_SAY("is if=virtio", "use if=none"), "-drive", "file=a,id=d,if=virtio",
		 "-device", "virtio-blk-pci,drive=d");
	CFGT_ERR(CFGT_SAY("already used by another -device"), "-drive", "file=a,id=d,if=none",
		 "-device", "virtio-blk-pci,drive=d", "-device", "virtio-blk-pci,drive=d");
	CFGT_ERR(CFGT_SAY("needs drive=ID"), "-device", "virtio-blk-pci");
	CFGT_ERR(CFGT_SAY("serial is longer than 20"), "-drive", "file=a,id=d,if=none", "-device",
		 "virtio-blk-pci,drive=d,serial=123456789012345678901");
	CFGT_ERR(CFGT_SAY("num-queues must be at least 1"), "-drive", "file=a,id=d,if=none",
		 "-device", "virtio-blk-pci,drive=d,num-queues=0");
	CFGT_ERR(CFGT_SAY("unknown key 'bootindex'", "drive, num-queues, serial"), "-drive",
		 "file=a,id=d,if=none", "-device", "virtio-blk-pci,drive=d,bootindex=1");
}
