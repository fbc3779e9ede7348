/* Runs the real kvmini binary as a user would: arguments, optional input on stdin (sent at
 * once or after a line appears), a time limit; captures stdout, stderr and the exit. */
#ifndef KVMINI_TESTS_HARNESS_H
#define KVMINI_TESTS_HARNESS_H

#include <stdbool.h>
#include <stddef.h>

struct harness_opts {
	const char *input;	 /* bytes for stdin, NULL for none (stdin is /dev/null) */
	const char *input_after; /* send input only once stdout contains this */
	double timeout_s;	 /* SIGTERM at the limit, SIGKILL 3 s later */
	bool keep_stdin_open;	 /* do not close stdin after input (the VM sees no EOF) */
	bool stdout_unread; /* nobody reads kvmini's stdout: the pipe fills up and stays full */
	const char *run_as_user; /* setuid to this uid/gid (numeric, e.g. "65534") before exec */
	/* NULL-terminated; once stdout holds all of these (each on a complete line), kvmini gets
	 * SIGTERM (the run still counts as not timed out). */
	const char *const *stop_when;
	/* Called once, when stop_when is met and before the SIGTERM, with kvmini's pid: a test
	 * looks at /proc/<pid> while the VM runs. It must not cr_assert (kvmini is still
	 * running): it records what it finds in inspect_arg for the test to check after. */
	void (*inspect)(int pid, void *inspect_arg);
	void *inspect_arg;
};

struct harness_result {
	int exit_status; /* valid when exited */
	bool exited;
	int term_signal; /* valid when !exited */
	bool timed_out;
	char *out, *err; /* NUL-terminated */
	size_t out_len, err_len;
	double seconds;
};

/* argv[0] is ignored and replaced by the kvmini path. Returns 0, or -1 if it could not
 * run at all. */
int harness_run(const char *const argv[], const struct harness_opts *o, struct harness_result *r);
void harness_result_free(struct harness_result *r);

const char *harness_kvmini(void); /* $KVMINI or build/kvmini */
/* Path of a test guest: $KVMINI_GUESTS/<name>.elf (default build/guests). Static buffer
 * per call slot: copy it if you keep several. */
const char *harness_guest(const char *name);
/* Number of lines of out that contain needle. */
unsigned harness_count(const char *out, const char *needle);

#endif
