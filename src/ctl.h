/* `kvmini ctl PATH [COMMAND [JSON-ARGS]]`: a QMP client. It connects, negotiates, sends one
 * command (or, without COMMAND, one per line of stdin: "COMMAND [JSON-ARGS]" or a whole
 * QMP request object), prints each reply and returns 0 if every reply was a "return", 1 on
 * an "error" or a lost connection, 2 on a usage error. */
#ifndef KVMINI_CTL_H
#define KVMINI_CTL_H

int ctl_main(int argc, char **argv);

/* `kvmini snapshot SOCKET PATH`: connects, negotiates, runs migrate to file:PATH (PATH made
 * absolute), waits for query-migrate to say completed and prints one line. 0 written, 1
 * failed (one line on stderr), 2 usage error. */
int snapshot_main(int argc, char **argv);

#endif
